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

The default model runs twice per thread count, interleaved call by call so both see the same
machine: as Codec runs it (grad off: the time-major path of rvqtool/model/seanet_inference.py)
and through its channels-first modules (`model.time_major = False`, the path before that one);
codes of the two are compared too.

Usage: python benchmarks/encode_speed.py [--seconds 20] [--repeats 3] [--threads 1,2] [--cpu-time] [--model default]
  --cpu-time: time with this process's CPU time (a busy machine inflates wall time, not this);
              with 2 threads that is x real time per CPU-second, not per second of wall time
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import types
import warnings
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


def sgemm_gflops(repeats: int, clock=time.perf_counter) -> float:
    """The machine's dense float32 rate at the current thread count (2048 x 2048 x 2048)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = best_time(lambda: torch.mm(a, b), max(repeats, 5), clock)[0]
    return 2 * 2048 ** 3 / seconds / 1e9


def interleaved(calls: list, repeats: int, clock) -> list[float]:
    """Best time of each call, the calls taking turns (one untimed warm-up round first)."""
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = clock()
            call()
            best[i] = min(best[i], clock() - start)
    return best


def with_path(codec, time_major: bool, call):
    """`call` run with the model's time-major inference path on or off."""
    def run():
        codec.model.time_major = time_major
        try:
            return call()
        finally:
            codec.model.time_major = True
    return run


def gflop_per_audio_second(codec) -> tuple[float, float]:
    """GFLOP the default model spends per second of audio: (encode incl. quantizer, decode)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, config = codec.model, codec.config
    wav = torch.zeros(1, 1, config.sample_rate)
    model.time_major = False  # count the modules' layers, whatever path runs them
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            latents = model.encode_latents(wav)
        encode = counter.get_total_flops()
        codes = model.quantize(latents, config.n_quantizers)
        with FlopCounterMode(display=False) as counter:
            model.decode_latents(model.dequantize(codes))
        decode = counter.get_total_flops()
    model.time_major = True
    quantizer = 2 * config.dimension * config.codebook_size * config.n_quantizers * config.frame_rate
    return (encode + quantizer) / 1e9, decode / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--cpu-time", action="store_true", help="time with CPU time instead of wall time")
    parser.add_argument("--model", default="default", help="a shipped version or a model file (rvqtool's architecture)")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    codec = load_codec(args.model)
    clip = np.concatenate([read_audio(p, 24000)[0] for p in CLIPS.values()])
    audio = np.resize(clip, int(args.seconds * 24000)).astype(np.float32)
    codes = codec.encode(audio)
    same = float((with_path(codec, False, lambda: codec.encode(audio))().codes == codes.codes).mean())
    reference = encodec_model()
    wav = torch.from_numpy(audio)[None, None]
    print(f"# {date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.seconds:g} s clip, best of {args.repeats}, {'CPU' if args.cpu_time else 'wall'} time")
    enc_gflop, dec_gflop = gflop_per_audio_second(codec)
    print(f"# {codec.name}: {enc_gflop:.2f} GFLOP per second of audio to encode (8 levels), {dec_gflop:.2f} to decode;"
          f" codes of the time-major path = the modules' at {same:.4%}")
    print(f"{'threads':>7} {'model':<22} {'encode x RT':>11} {'decode x RT':>11}")
    for threads in [int(n) for n in args.threads.split(",")]:
        torch.set_num_threads(threads)
        sgemm = sgemm_gflops(args.repeats, clock)
        encode, decode = (lambda: codec.encode(audio)), (lambda: codec.decode(codes))
        t_enc, t_dec, t_enc_before, t_dec_before = interleaved(
            [encode, decode, with_path(codec, False, encode), with_path(codec, False, decode)], args.repeats, clock)
        for label, encode_time, decode_time in ((f"rvqtool {codec.name} 6 kbps"[:22], t_enc, t_dec),
                                                ("  modules (before)", t_enc_before, t_dec_before)):
            ours_enc, ours_dec = args.seconds / encode_time, args.seconds / decode_time
            print(f"{threads:>7} {label:<22} {ours_enc:11.1f} {ours_dec:11.1f}"
                  f"   (sgemm {sgemm:.0f} GFLOP/s: encode {enc_gflop * ours_enc:.0f} GFLOP/s = "
                  f"{enc_gflop * ours_enc / sgemm:.0%}, limit {sgemm / enc_gflop:.0f}x RT; decode "
                  f"{dec_gflop * ours_dec:.0f} GFLOP/s = {dec_gflop * ours_dec / sgemm:.0%}, "
                  f"limit {sgemm / dec_gflop:.0f}x RT)")
        ours_enc, ours_dec = args.seconds / t_enc, args.seconds / t_dec
        if reference is not None:
            with torch.inference_mode():
                frames = reference.encode(wav)
                ref_enc = args.seconds / best_time(lambda: reference.encode(wav), args.repeats, clock)[0]
                ref_dec = args.seconds / best_time(lambda: reference.decode(frames), args.repeats, clock)[0]
            print(f"{threads:>7} {'encodec 24 kHz 6 kbps':<22} {ref_enc:11.1f} {ref_dec:11.1f}"
                  f"   (rvqtool: {ours_enc / ref_enc:.1f}x encode, {ours_dec / ref_dec:.1f}x decode)")


if __name__ == "__main__":
    main()
