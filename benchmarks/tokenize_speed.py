#!/usr/bin/env python3
"""Throughput of `rvq tokenize` (hours of audio tokenized per hour = x real time) with the
default model: 1 worker and 2 workers, beside the bare `Codec.encode` speed on the same audio,
already decoded into memory, in the same run.

The corpus is made here: the three shipped example clips cut into files of `--seconds`, half
written as 24 kHz WAV, half as 44.1 kHz FLAC (so reading includes FLAC decoding and resampling,
as in a real corpus). Tokenizing runs through the token job's stages (`rvqtool.tokens.plan`,
`.engines`, `.run`: what `rvqtool.tokens.tokenize` and the CLI call), from planning to manifest,
into a fresh directory each time; pool start-up (spawning workers that import torch and load the
model, measured on its own) is counted in "total" and taken out in "steady", which is what a long
job approaches.

Rows: decoding + resampling alone (every file read as the tokenizer's reader thread reads it, no
encode); bare encode on 1 and 2 threads, each followed at once by tokenize with 1 worker of the same
threads (so each pair sees the same machine); 2 workers of 1 thread. The goals (issue 4): 2 workers
>= 1.8x one worker of one thread (scaling over processes), and one worker within 10 % of bare
encode on the same threads.

Beside wall-clock x real time, every row gives x real time per CPU-second (this process and its
worker processes) and, for rows that encode in this process, the seconds its main thread stood
ready to run while another process held the core (Linux schedstat). A busy machine shows up
there and as a wall loss with no CPU loss; the CPU loss is the job's own overhead.

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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from rvqtool import load_codec
from rvqtool.io.audio import open_audio, read_audio
from rvqtool.tokens import encoders, engines, plan as planning, run, sources
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


@dataclass(frozen=True)
class Took:
    wall: float
    cpu: float                # this process and its finished children (pool workers)
    waited: float | None      # main thread ready to run but without a core (None: no schedstat)

    def __sub__(self, other: "Took") -> "Took":
        waited = None if self.waited is None or other.waited is None else self.waited - other.waited
        return Took(self.wall - other.wall, self.cpu - other.cpu, waited)


def now() -> Took:
    children = os.times()   # whole clock ticks: fine for pool workers, too coarse for this process
    try:  # run-queue wait of this thread, in ns: the second field
        waited = int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        waited = None
    return Took(time.perf_counter(), time.process_time() + children.children_user + children.children_system, waited)


def read_only(paths: list[Path], sample_rate: int) -> Took:
    """Decode and resample every file as the tokenizer's reader thread does, and nothing else."""
    start = now()
    for path in paths:
        for _ in open_audio(path, sample_rate, mono=True, block_seconds=encoders.BLOCK_SECONDS)[1]:
            pass
    return now() - start


def bare_encode(codec, audio: list[np.ndarray], threads: int) -> Took:
    torch.set_num_threads(threads)
    codec.encode(audio[0])                                   # warm-up
    start = now()
    for wav in audio:
        codec.encode(wav)
    return now() - start


def pool_startup(workers: int, threads: int) -> Took:
    """Time to spawn `workers` processes that import torch and load the model, and stop them."""
    import multiprocessing

    start = now()
    pool = multiprocessing.get_context("spawn").Pool(workers, encoders.init_worker,
                                                     ("tokenize", "default", "cpu", 8, threads))
    pool.map(abs, range(workers))
    pool.close()
    pool.join()
    return now() - start


def tokenize(codec, corpus: Path, workers: int, threads: int, work: Path) -> Took:
    """One whole tokenize job, from planning to manifest (pool workers are joined by its end)."""
    out = work / f"out-{workers}-{threads}"
    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(threads)
    start = now()
    found = sources.collect([str(corpus)], frozenset({".wav", ".flac"}))
    plan = planning.make_plan("tokenize", found, planning.TokenOptions(shard_tokens=2_000_000),
                              planning.template_for(codec), codec)
    encoder = AudioEncoder(codec, plan.vocab.level_count) if workers == 1 else None
    engine = engines.local_engine("tokenize", "default", "cpu", plan.vocab.level_count, workers, encoder, threads)
    summary = run.run_job(plan, out, engine, workers)
    took = now() - start
    assert summary.complete and not summary.failures and summary.files_done == len(plan.files)
    return took


def row(name: str, seconds: float, took: Took, steady: Took | None = None, note: str = "") -> None:
    steady_rate = f"{seconds / steady.wall:11.1f}" if steady else f"{'':>11}"
    waited = f"{took.waited:8.1f} s" if took.waited is not None else f"{'-':>10}"
    print(f"{name:<34} {seconds / took.wall:10.1f} {steady_rate} {seconds / (steady or took).cpu:10.1f} "
          f"{waited}{note}")


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
        print(f"{'run':<34} {'x RT total':>10} {'x RT steady':>11} {'x RT / CPU':>10} {'no core':>10}")
        reading = read_only(paths, codec.sample_rate)
        row("decode + resample only", hours, reading)
        bare, one = {}, {}
        for threads in (1, 2):
            bare[threads] = bare_encode(codec, audio, threads)
            row(f"bare Codec.encode, {threads} thread(s)", hours, bare[threads])
            one[threads] = tokenize(codec, corpus, 1, threads, work)
            row(f"tokenize, 1 worker(s) x {threads} thread(s)", hours, one[threads], one[threads])
        two = tokenize(codec, corpus, 2, 1, work)
        startup = pool_startup(2, 1)
        two_steady = Took(two.wall - startup.wall, two.cpu - startup.cpu, None)
        row("tokenize, 2 worker(s) x 1 thread(s)", hours, Took(two.wall, two.cpu, None), two_steady,
            f"  (start-up {startup.wall:.1f} s, {startup.cpu:.1f} CPU-s)")
        print(f"# load average {os.getloadavg()[0]:.1f} at the end; x RT / CPU: audio seconds per CPU-second "
              "(steady where there is a steady column); no core: seconds the main thread was ready "
              "but another process held the core (a quiet machine: ~0)")
        print(f"2 workers / 1 worker (1 thread each): {one[1].wall / two.wall:.2f}x total, "
              f"{one[1].wall / two_steady.wall:.2f}x steady (goal >= 1.8)")
        for threads in (1, 2):
            tok, ref = one[threads], bare[threads]
            print(f"1 worker x {threads} thread(s) vs bare encode: {100 * (1 - ref.wall / tok.wall):.1f} % of the "
                  f"wall time lost (goal <= 10 %), {100 * (1 - ref.cpu / tok.cpu):.1f} % of the CPU time, "
                  f"decoding + resampling alone being {100 * reading.cpu / tok.cpu:.1f} %")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
