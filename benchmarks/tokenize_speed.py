#!/usr/bin/env python3
"""Throughput of `rvq tokenize` (hours of audio tokenized per hour = x real time) with the
default model: 1 worker and 2 workers, beside the bare `Codec.encode` speed on the same audio,
already decoded into memory, in the same run.

The corpus is made here: the three shipped example clips cut into files of `--seconds`, half
written as 24 kHz WAV, half as 44.1 kHz FLAC (so reading includes FLAC decoding and resampling,
as in a real corpus). Tokenizing runs through the Python API (`rvqtool.tokens.pipeline`, what the
CLI calls), from planning to manifest, into a fresh directory each time; pool start-up (spawning
workers that import torch and load the model, measured on its own) is counted in "total" and
taken out in "steady", which is what a long job approaches.

Rows: bare encode on 1 and 2 threads; tokenize with 1 worker of 1 thread, 1 worker of 2 threads,
and 2 workers of 1 thread. The goals (issue 4): 2 workers >= 1.8x one worker of one thread
(scaling over processes), and one worker within 10 % of bare encode on the same threads.

Usage: python benchmarks/tokenize_speed.py            # ~20 min of audio, a few minutes; quiet machine
       python benchmarks/tokenize_speed.py --quick    # ~2 min of audio, a smoke run
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from rvqtool import load_codec
from rvqtool.io.audio import read_audio
from rvqtool.tokens import pipeline, sources
from rvqtool.tokens.encoders import AudioEncoder

CLIPS = sorted((Path(__file__).resolve().parent.parent / "examples" / "audio").glob("demo_*.flac"))


def make_corpus(root: Path, files: int, seconds: float) -> list[Path]:
    clip = np.concatenate([read_audio(p, 24000)[0] for p in CLIPS])
    n = int(seconds * 24000)
    out = []
    for i in range(files):
        piece = np.roll(clip, -i * 7919)[:n] if len(clip) >= n else np.resize(np.roll(clip, -i * 7919), n)
        if i % 2:
            path = root / f"{i:04d}.flac"
            sf.write(str(path), soxr.resample(piece, 24000, 44100), 44100, subtype="PCM_16")
        else:
            path = root / f"{i:04d}.wav"
            sf.write(str(path), piece, 24000, subtype="PCM_16")
        out.append(path)
    return out


def bare_encode(codec, audio: list[np.ndarray], threads: int) -> float:
    torch.set_num_threads(threads)
    codec.encode(audio[0])                                   # warm-up
    start = time.perf_counter()
    for wav in audio:
        codec.encode(wav)
    return time.perf_counter() - start


def pool_startup(workers: int, threads: int) -> float:
    """Seconds to spawn `workers` processes that import torch and load the model, and stop them."""
    import multiprocessing

    from rvqtool.tokens import encoders

    start = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(workers, encoders.init_worker,
                                                     ("tokenize", "default", "cpu", 8, threads))
    pool.map(abs, range(workers))
    pool.close()
    pool.join()
    return time.perf_counter() - start


def tokenize(codec, corpus: Path, workers: int, threads: int, work: Path) -> float:
    """Seconds for one whole tokenize job, from planning to manifest."""
    out = work / f"out-{workers}-{threads}"
    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    found = sources.collect([str(corpus)], frozenset({".wav", ".flac"}))
    plan = pipeline.make_plan("tokenize", found, pipeline.TokenOptions(shard_tokens=2_000_000),
                              pipeline.template_for(codec), codec)
    encoder = AudioEncoder(codec, plan.vocab.n_q) if workers == 1 else None
    engine = pipeline.local_engine("tokenize", "default", "cpu", plan.vocab.n_q, workers, encoder, threads)
    summary = pipeline.run_job(plan, out, engine, workers)
    total = time.perf_counter() - start
    assert summary.complete and not summary.failures and summary.files_done == len(plan.files)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="12 files of 10 s instead of 60 of 20 s")
    parser.add_argument("--files", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    files = args.files or (12 if args.quick else 60)
    seconds = args.seconds or (10.0 if args.quick else 20.0)
    work = Path(tempfile.mkdtemp(prefix="rvq-tokbench-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        paths = make_corpus(corpus, files, seconds)
        codec = load_codec("default", "cpu")
        audio = [read_audio(p, 24000)[0] for p in paths]
        hours = files * seconds
        print(f"# {datetime.now():%Y-%m-%d %H:%M} {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}; "
              f"{files} files x {seconds:g} s ({hours / 60:.1f} min; half 44.1 kHz FLAC)")
        print(f"{'run':<34} {'x RT total':>10} {'x RT steady':>11}  (steady: without the pool's start-up)")
        bare = {}
        for threads in (1, 2):
            bare[threads] = hours / bare_encode(codec, audio, threads)
            print(f"{f'bare Codec.encode, {threads} thread(s)':<34} {bare[threads]:10.1f} {'':>11}")
        rates = {}
        for workers, threads in ((1, 1), (1, 2), (2, 1)):
            total = tokenize(codec, corpus, workers, threads, work)
            startup = pool_startup(workers, threads) if workers > 1 else 0.0
            rates[workers, threads] = (hours / total, hours / (total - startup))
            print(f"{f'tokenize, {workers} worker(s) x {threads} thread(s)':<34} {hours / total:10.1f} "
                  f"{hours / (total - startup):11.1f}" + (f"  (start-up {startup:.1f} s)" if startup else ""))
        one, two = rates[1, 1], rates[2, 1]
        print(f"2 workers / 1 worker (1 thread each): {two[0] / one[0]:.2f}x total, {two[1] / one[1]:.2f}x steady (goal >= 1.8)")
        for threads in (1, 2):
            loss = 1 - rates[1, threads][0] / bare[threads]
            print(f"1 worker x {threads} thread(s) vs bare encode: {100 * loss:.1f} % lost to reading, "
                  f"resampling and writing (goal <= 10 %)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
