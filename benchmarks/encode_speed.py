#!/usr/bin/env python3
"""Encode/decode speed of the default model, as multiples of real time, on 1 and 2 CPU threads,
beside the reference EnCodec 24 kHz model (6 kbps) measured in the same run, and as a share of
the machine's limit: the codec's achieved GFLOP/s (its convolutions and matrix products counted
with torch.utils.flop_counter on one second of audio, plus the quantizer's distance products,
2·D·K per level and frame, which run in our kernels where the counter cannot see them) against a
same-run float32 matrix product (sgemm, 2048², the best a core reaches on dense work).

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


def sgemm_gflops(repeats: int) -> float:
    """The machine's dense float32 rate at the current thread count (2048 x 2048 x 2048)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = best_time(lambda: torch.mm(a, b), max(repeats, 5))[0]
    return 2 * 2048 ** 3 / seconds / 1e9


def gflop_per_audio_second(codec) -> tuple[float, float]:
    """GFLOP the default model spends per second of audio: (encode incl. quantizer, decode)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, config = codec.model, codec.config
    wav = torch.zeros(1, 1, config.sample_rate)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            latents = model.encode_latents(wav)
        encode = counter.get_total_flops()
        codes = model.quantize(latents, config.n_quantizers)
        with FlopCounterMode(display=False) as counter:
            model.decode_latents(model.dequantize(codes))
        decode = counter.get_total_flops()
    quantizer = 2 * config.dimension * config.codebook_size * config.n_quantizers * config.frame_rate
    return (encode + quantizer) / 1e9, decode / 1e9


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
    enc_gflop, dec_gflop = gflop_per_audio_second(codec)
    print(f"# default model: {enc_gflop:.2f} GFLOP per second of audio to encode (8 levels), {dec_gflop:.2f} to decode")
    print(f"{'threads':>7} {'model':<22} {'encode x RT':>11} {'decode x RT':>11}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sgemm = sgemm_gflops(args.repeats)
        ours_enc = args.seconds / best_time(lambda: codec.encode(audio), args.repeats)[0]
        ours_dec = args.seconds / best_time(lambda: codec.decode(codes), args.repeats)[0]
        print(f"{threads:>7} {'rvqtool default 6 kbps':<22} {ours_enc:11.1f} {ours_dec:11.1f}"
              f"   (sgemm {sgemm:.0f} GFLOP/s: encode {enc_gflop * ours_enc:.0f} GFLOP/s = "
              f"{enc_gflop * ours_enc / sgemm:.0%}, limit {sgemm / enc_gflop:.0f}x RT; decode "
              f"{dec_gflop * ours_dec:.0f} GFLOP/s = {dec_gflop * ours_dec / sgemm:.0%}, limit {sgemm / dec_gflop:.0f}x RT)")
        if reference is not None:
            with torch.inference_mode():
                frames = reference.encode(wav)
                ref_enc = args.seconds / best_time(lambda: reference.encode(wav), args.repeats)[0]
                ref_dec = args.seconds / best_time(lambda: reference.decode(frames), args.repeats)[0]
            print(f"{threads:>7} {'encodec 24 kHz 6 kbps':<22} {ref_enc:11.1f} {ref_dec:11.1f}"
                  f"   (rvqtool: {ours_enc / ref_enc:.1f}x encode, {ours_dec / ref_dec:.1f}x decode)")


if __name__ == "__main__":
    main()
