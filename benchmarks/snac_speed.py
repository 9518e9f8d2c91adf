#!/usr/bin/env python3
"""rvqtool's SNAC vs the `snac` package on the same weights: encode and decode of the same input,
1 and 2 CPU threads, as multiples of real time. Codes are checked equal before anything is timed.

Weights are random (no download here; speed does not depend on them), saved in the published
layout (config.json + pytorch_model.bin) and loaded by rvqtool from that folder. The decoder's
noise blocks draw from torch's generator in the reference and from a seeded one in ours: the
same work either way.

Usage: python benchmarks/snac_speed.py [--kind snac_24khz|snac_32khz|snac_44khz] [--seconds 10]
       [--repeats 3] [--threads 1 2] [--cpu-time]
"""
from __future__ import annotations

import argparse
import json
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
from rvqtool.model.snac import levels_to_rows  # noqa: E402
from rvqtool.pretrained import snac as pretrained_snac  # noqa: E402
from tests.audio import CLIPS  # noqa: E402

# the published configs (hubertsiuzdak/snac_24khz, _32khz, _44khz)
CONFIGS = {
    "snac_24khz": {"sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
                   "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096,
                   "codebook_dim": 8, "vq_strides": [4, 2, 1], "noise": True, "depthwise": True},
    "snac_32khz": {"sampling_rate": 32000, "encoder_dim": 64, "encoder_rates": [2, 3, 8, 8], "decoder_dim": 1536,
                   "decoder_rates": [8, 8, 3, 2], "attn_window_size": 32, "codebook_size": 4096,
                   "codebook_dim": 8, "vq_strides": [8, 4, 2, 1], "noise": True, "depthwise": True},
}
CONFIGS["snac_44khz"] = {**CONFIGS["snac_32khz"], "sampling_rate": 44100}


def clip(seconds: float, rate: int) -> np.ndarray:
    audio = np.concatenate([read_audio(p, rate)[0] for p in CLIPS.values()])
    return np.resize(audio, int(seconds * rate)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=sorted(CONFIGS), default="snac_24khz")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    try:
        from snac import SNAC
    except ImportError:
        sys.exit("the snac package is not installed: pip install --no-deps snac==1.2.1")
    clock = time.process_time if args.cpu_time else time.perf_counter
    config = CONFIGS[args.kind]
    rate = config["sampling_rate"]
    torch.manual_seed(0)
    reference = SNAC(**config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        torch.save(reference.state_dict(), Path(tmp) / "pytorch_model.bin")
        ours, _ = pretrained_snac.load(args.kind, Path(tmp))
    levels = len(config["vq_strides"])
    wav = torch.from_numpy(clip(args.seconds, rate))[None, None]
    print(f"# {date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.kind}, "
          f"{args.seconds:g} s clip, best of {args.repeats}, {'CPU' if args.cpu_time else 'wall'} time; "
          "x RT = seconds of audio per second")
    print("| model | threads | encode x RT: rvqtool / snac (ratio) | decode x RT: rvqtool / snac (ratio) | codes equal |")
    print("|---|---|---|---|---|")
    versus_reference(args.kind, ours, reference.encode, reference.decode, wav, levels, args.seconds, args.threads,
                     args.repeats, clock, lambda rows, codes: float((rows == levels_to_rows(codes)).double().mean()))


if __name__ == "__main__":
    main()
