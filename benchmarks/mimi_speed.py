#!/usr/bin/env python3
"""rvqtool's Mimi vs moshi's on the same weights (the published size, random weights: no download
here, and speed does not depend on them): encode (wav -> 32-level codes) and decode (codes ->
wav), 1 and 2 CPU threads, as multiples of real time. Codes are checked equal before timing.

Usage: python benchmarks/mimi_speed.py [--seconds 10] [--repeats 3] [--threads 1 2] [--cpu-time]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402

from rvqtool.io.audio import read_audio  # noqa: E402
from rvqtool.pretrained.mimi import load_mimi  # noqa: E402
from tests.audio import CLIPS  # noqa: E402
from tests.mimi_reference import FULL, moshi_mimi  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    audio = np.concatenate([read_audio(p, 24000)[0] for p in CLIPS.values()])
    wav = torch.from_numpy(np.resize(audio, int(args.seconds * 24000)).astype(np.float32))[None, None]
    with tempfile.TemporaryDirectory() as tmp:
        reference, path = moshi_mimi(Path(tmp), FULL, fill=False)
        ours, _ = load_mimi(path)
    reference.set_num_codebooks(32)
    print(f"# {date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.seconds:g} s clip, best of {args.repeats}, {'CPU' if args.cpu_time else 'wall'} time")
    print("| model | threads | encode x RT: rvqtool / moshi (ratio) | decode x RT: rvqtool / moshi (ratio) | codes equal |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            t_ref_enc, codes_ref = best_time(lambda: reference.encode(wav), args.repeats, clock)
            t_ref_dec, _ = best_time(lambda: reference.decode(codes_ref), args.repeats, clock)
            t_enc, codes = best_time(lambda: ours.quantize(ours.encode_latents(wav), 32), args.repeats, clock)
            t_dec, _ = best_time(lambda: ours.decode_latents(ours.dequantize(codes)), args.repeats, clock)
        equal = float((codes == codes_ref).float().mean())
        s = args.seconds
        print(f"| Mimi, 32 levels | {threads} | {s / t_enc:.1f} / {s / t_ref_enc:.1f} ({t_ref_enc / t_enc:.2f}x) | "
              f"{s / t_dec:.1f} / {s / t_ref_dec:.1f} ({t_ref_dec / t_dec:.2f}x) | {equal:.2%} |", flush=True)


if __name__ == "__main__":
    main()
