"""Print how close a reconstruction is to its original: SI-SDR, DAC mel distance, and the bitrate
and frame count of the codes in between.

Usage: python examples/compare.py ORIGINAL DECODED [CODES]
"""
from __future__ import annotations

import sys

from rvqtool import load_codes
from rvqtool.io.audio import read_audio
from rvqtool.metrics import mel_distance, si_sdr


def main(original: str, decoded: str, codes_path: str | None = None) -> None:
    rate = 24000
    if codes_path:
        codes = load_codes(codes_path)
        rate = codes.meta.sample_rate
        print(f"codes      {codes.meta.n_q} levels x {codes.frames} frames at {codes.meta.frame_rate:g} Hz "
              f"= {codes.meta.bitrate_kbps():.2f} kbps")
    reference = read_audio(original, rate)[0]
    estimate = read_audio(decoded, rate)[0][: len(reference)]
    print(f"SI-SDR     {si_sdr(estimate, reference):6.2f} dB   (higher is better)")
    print(f"mel dist   {mel_distance(estimate, reference, rate):6.3f}      (DAC's multi-scale mel distance; lower is better)")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
