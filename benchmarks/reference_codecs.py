#!/usr/bin/env python3
"""rvqtool vs the reference packages on their own checkpoints: EnCodec 24 kHz (6 kbps) and DAC
44 kHz (9 levels), same weights, same input, encode and decode, 1 and 2 CPU threads, as
multiples of real time, the two sides timed in turns. Codes are checked equal before anything is timed.

Weights are random (no download here; speed does not depend on them), written as the reference
would save them and loaded by rvqtool from that file. The reference packages need stand-ins for
imports they make but these paths never use (torchaudio for encodec; audiotools, argbind, tqdm
for dac): see tests/pretrained_reference.py. A package that is not installed is skipped.

Usage: python benchmarks/reference_codecs.py [--seconds 10] [--repeats 3] [--only encodec|dac]
       [--threads 1 2] [--cpu-time]
--cpu-time times with the process's CPU clock instead of the wall clock: steadier on a busy
machine, and equal to wall time on one thread when nothing else competes.
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
from timing import best_times_interleaved  # noqa: E402

from rvqtool import load_codec  # noqa: E402
from rvqtool.io.audio import read_audio  # noqa: E402
from tests.audio import CLIPS  # noqa: E402


def clip(seconds: float, rate: int) -> np.ndarray:
    audio = np.concatenate([read_audio(p, rate)[0] for p in CLIPS.values()])
    return np.resize(audio, int(seconds * rate)).astype(np.float32)


def encodec_pair(directory: Path, seconds: float):
    from tests.pretrained_reference import import_encodec

    encodec = import_encodec()
    torch.manual_seed(0)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    for layer in model.quantizer.vq.layers:   # non-zero codebooks, so codes are not all 0
        layer._codebook.embed.normal_(0, 0.05)
    model.set_target_bandwidth(6.0)
    torch.save(model.state_dict(), directory / "encodec.th")
    codec = load_codec(f"encodec_24khz:{directory / 'encodec.th'}")
    audio = clip(seconds, 24000)
    wav = torch.from_numpy(audio)[None, None]

    def ref_encode():
        return model.encode(wav)

    def ref_decode(frames):
        return model.decode(frames)

    return "EnCodec 24 kHz, 6 kbps", codec, 8, audio, ref_encode, ref_decode, lambda f: f[0][0][0].numpy()


def dac_pair(directory: Path, seconds: float):
    from tests.pretrained_reference import import_dac

    dac = import_dac()
    torch.manual_seed(0)
    model = dac.DAC().eval()
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": {"sample_rate": 44100}}}, directory / "dac.pth")
    codec = load_codec(f"dac_44khz:{directory / 'dac.pth'}")
    audio = clip(seconds, 44100)
    wav = torch.from_numpy(audio)[None, None]

    def ref_encode():
        return model.encode(model.preprocess(wav, 44100))[1]

    def ref_decode(codes):
        return model.decode(model.quantizer.from_codes(codes)[0])

    return "DAC 44 kHz, 9 levels", codec, 9, audio, ref_encode, ref_decode, lambda c: c[0].numpy()


def in_inference(fn):
    """fn run under torch.inference_mode (the reference packages' calls; ours set it themselves)."""
    def run():
        with torch.inference_mode():
            return fn()
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["encodec", "dac"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"# {date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.seconds:g} s clip, best of {args.repeats}, {'CPU' if args.cpu_time else 'wall'} time; x RT = seconds of audio per second")
    print(f"| model | threads | encode x RT: rvqtool / reference (ratio) | decode x RT: rvqtool / reference (ratio) | codes equal |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("encodec", encodec_pair), ("dac", dac_pair)):
            if args.only not in (None, name):
                continue
            try:
                label, codec, n_q, audio, ref_encode, ref_decode, ref_codes = make(Path(tmp), args.seconds)
            except BaseException as exc:  # pytest's skip when the package is missing
                print(f"| {name} | – | skipped: {exc} | | |")
                continue
            for threads in args.threads:
                torch.set_num_threads(threads)
                # ours and the reference in turns (see timing.best_times_interleaved)
                (t_ref_enc, frames), (t_enc, codes) = best_times_interleaved(
                    [in_inference(ref_encode), lambda: codec.encode(audio, n_q=n_q)], args.repeats, clock)
                (t_ref_dec, _), (t_dec, _) = best_times_interleaved(
                    [in_inference(lambda: ref_decode(frames)), lambda: codec.decode(codes)], args.repeats, clock)
                equal = float((codes.codes[0] == ref_codes(frames)).mean())
                s = args.seconds
                print(f"| {label} | {threads} | {s / t_enc:.1f} / {s / t_ref_enc:.1f} ({t_ref_enc / t_enc:.2f}x) | "
                      f"{s / t_dec:.1f} / {s / t_ref_dec:.1f} ({t_ref_dec / t_dec:.2f}x) | {equal:.2%} |", flush=True)


if __name__ == "__main__":
    main()
