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
from timing import versus_reference  # noqa: E402

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
    versus_reference("Mimi, 32 levels", ours, reference.encode, reference.decode, wav, 32, args.seconds,
                     args.threads, args.repeats, clock, lambda a, b: float((a == b).float().mean()))


if __name__ == "__main__":
    main()
