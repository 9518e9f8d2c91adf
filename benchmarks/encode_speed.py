#!/usr/bin/env python3
"""Encode/decode speed of the default model, as multiples of real time, on 1 and 2 CPU threads,
beside the reference EnCodec 24 kHz model (6 kbps) measured in the same run.

EnCodec's weights cannot be downloaded here, so it runs with random weights (speed does not
depend on them). The `encodec` package imports torchaudio at import time only for file I/O and a
discriminator; no torchaudio wheel fits this torch, so a stand-in module is registered first.
Install it with `pip install --no-deps encodec`; without it, its rows are skipped.

Usage: python benchmarks/encode_speed.py [--seconds 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
import warnings
import platform
import sys
import types
from datetime import date

import numpy as np
import torch

from rvqtool import load_codec
from rvqtool.io.audio import read_audio
from timing import best_time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from tests.audio import CLIPS  # noqa: E402


def encodec_model():
    warnings.filterwarnings("ignore", category=FutureWarning)
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    try:
        from encodec import EncodecModel
    except ImportError:
        return None
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    codec = load_codec("default")
    clip = np.concatenate([read_audio(p, 24000)[0] for p in CLIPS.values()])
    audio = np.resize(clip, int(args.seconds * 24000)).astype(np.float32)
    codes = codec.encode(audio)
    reference = encodec_model()
    wav = torch.from_numpy(audio)[None, None]
    print(f"# {date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.seconds:g} s clip, best of {args.repeats}")
    print(f"{'threads':>7} {'model':<22} {'encode x RT':>11} {'decode x RT':>11}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        ours_enc = args.seconds / best_time(lambda: codec.encode(audio), args.repeats)[0]
        ours_dec = args.seconds / best_time(lambda: codec.decode(codes), args.repeats)[0]
        print(f"{threads:>7} {'rvqtool default 6 kbps':<22} {ours_enc:11.1f} {ours_dec:11.1f}")
        if reference is not None:
            with torch.inference_mode():
                frames = reference.encode(wav)
                ref_enc = args.seconds / best_time(lambda: reference.encode(wav), args.repeats)[0]
                ref_dec = args.seconds / best_time(lambda: reference.decode(frames), args.repeats)[0]
            print(f"{threads:>7} {'encodec 24 kHz 6 kbps':<22} {ref_enc:11.1f} {ref_dec:11.1f}"
                  f"   (rvqtool: {ours_enc / ref_enc:.1f}x encode, {ours_dec / ref_dec:.1f}x decode)")


if __name__ == "__main__":
    main()
