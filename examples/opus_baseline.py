#!/usr/bin/env python3
"""Opus reference numbers on a clip manifest, so rvqtool models can be compared with a standard codec.

Each clip is encoded with Debian's opus-tools (`opusenc --bitrate K --vbr`) and decoded with
`opusdec --rate 24000 --float`, then scored with rvqtool.metrics (DAC mel distance, SI-SDR).
opusdec honours the Ogg pre-skip and end granule, so its output has the input's length and, in CELT
mode (64 kbps), lag 0; at 6 kbps and below (SILK mode) it lags by 1-2 samples (~1.0-1.8 by fractional
cross-correlation), which costs up to ~0.7 dB SI-SDR. So each decoded clip is shifted by its integer
cross-correlation peak, searched only within +-MAX_LAG samples: a wider search lets noise-like clips,
whose waveform a low-rate codec does not keep, pick spurious peaks (seen: +57 / -36 samples at +-40 ms).
Bitrates are reported as the codec asks for them and as measured: whole .opus file and Opus audio
packets only (without Ogg/header overhead, the number comparable to a neural codec's token rate).

opusenc floors low requests: 1.5, 3 and 4.5 kbps decode to identical audio (~4.7 kbps of packets),
so the default pair is 6 kbps and "lowest" (1.5 requested).

Usage: python examples/opus_baseline.py /work/data/heldout --out opus.json [--kbps 6 1.5]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from rvqtool.metrics import mel_distance, si_sdr

SR = 24000
MAX_LAG = 8  # samples (0.33 ms): covers the 1-2 sample SILK-mode lag, too narrow for spurious noise peaks


def opus_packet_bytes(path: str) -> int:
    """Bytes of Opus audio packets in an Ogg file: every packet after OpusHead and OpusTags."""
    data = open(path, "rb").read()
    sizes, cur, pos = [], 0, 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS", f"bad Ogg page in {path}"
        nseg = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + nseg]
        for v in lacing:
            cur += v
            if v < 255:
                sizes.append(cur)
                cur = 0
        pos += 27 + nseg + sum(lacing)
    return sum(sizes[2:])


def lag_of(estimate: np.ndarray, reference: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """Delay of estimate relative to reference (samples) at the cross-correlation peak within +-max_lag."""
    n = len(estimate) + len(reference)
    xc = np.fft.irfft(np.fft.rfft(estimate, n) * np.conj(np.fft.rfft(reference, n)), n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(xc[lags])])


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the end to n samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def align(y: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, int]:
    """Undo the decoder's residual delay (lag > 0: drop leading samples; < 0: pad zeros) at ref's length."""
    lag = lag_of(fit_length(y, len(ref)), ref)
    y = y[lag:] if lag >= 0 else np.pad(y, (-lag, 0))
    return fit_length(y, len(ref)), lag


def code(wav: str, kbps: float, td: str) -> tuple[np.ndarray, int, int]:
    """Opus round trip of one wav; returns decoded signal, .opus file bytes and audio-packet bytes."""
    enc, dec = os.path.join(td, "x.opus"), os.path.join(td, "y.wav")
    subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), "--vbr", wav, enc], check=True)
    subprocess.run(["opusdec", "--quiet", "--rate", str(SR), "--float", enc, dec], check=True)
    y, sr = sf.read(dec, dtype="float32", always_2d=True)
    assert sr == SR
    return y[:, 0], os.path.getsize(enc), opus_packet_bytes(enc)


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Means per (bitrate, category) and per bitrate overall."""
    out: dict[str, dict[str, float]] = {}
    for kbps in sorted({r["requested_kbps"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["requested_kbps"] == kbps]
        for cat in sorted({r["category"] for r in sel}) + ["all"]:
            rs = [r for r in sel if cat in ("all", r["category"])]
            secs = sum(r["seconds"] for r in rs)
            out[f"{kbps}/{cat}"] = {
                "n": len(rs),
                "kbps_file": sum(r["file_bytes"] for r in rs) * 8 / secs / 1000,
                "kbps_payload": sum(r["packet_bytes"] for r in rs) * 8 / secs / 1000,
                "mel_distance": float(np.mean([r["mel_distance"] for r in rs])),
                "si_sdr": float(np.mean([r["si_sdr"] for r in rs])),
                "si_sdr_unaligned": float(np.mean([r["si_sdr_unaligned"] for r in rs])),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", help="directory holding manifest.csv and the clips it lists")
    ap.add_argument("--out", required=True, help="JSON file for per-clip results and means")
    ap.add_argument("--kbps", type=float, nargs="+", default=[6.0, 1.5], help="requested opusenc bitrates")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    with open(os.path.join(args.root, "manifest.csv"), newline="") as f:
        clips = list(csv.DictReader(f))
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for c in clips:
            ref, sr = sf.read(os.path.join(args.root, c["file"]), dtype="float32")
            assert sr == SR and ref.ndim == 1, c["file"]
            for kbps in args.kbps:
                y, file_bytes, packet_bytes = code(os.path.join(args.root, c["file"]), kbps, td)
                est, lag = align(y, ref)
                rows.append({"file": c["file"], "category": c["category"], "seconds": len(ref) / SR,
                             "requested_kbps": kbps, "file_bytes": file_bytes, "packet_bytes": packet_bytes,
                             "decoded_len_minus_ref": len(y) - len(ref), "xcorr_lag": lag,
                             "mel_distance": mel_distance(est, ref, SR), "si_sdr": si_sdr(est, ref),
                             "si_sdr_unaligned": si_sdr(fit_length(y, len(ref)), ref)})
    summary = summarize(rows)
    print(f"{'kbps':>5} {'category':8} {'n':>3} {'kbps_file':>9} {'kbps_pkt':>8} {'mel':>6} {'si_sdr':>7} "
          f"{'unalign':>7}")
    for key, s in summary.items():
        kbps, cat = key.split("/")
        print(f"{kbps:>5} {cat:8} {s['n']:3d} {s['kbps_file']:9.2f} {s['kbps_payload']:8.2f} "
              f"{s['mel_distance']:6.3f} {s['si_sdr']:7.2f} {s['si_sdr_unaligned']:7.2f}")
    lags = sorted({r["xcorr_lag"] for r in rows})
    lens = sorted({r["decoded_len_minus_ref"] for r in rows})
    print(f"xcorr lags applied: {lags}; decoded-minus-reference lengths seen: {lens}; {time.time() - t0:.0f} s")
    with open(args.out, "w") as f:
        json.dump({"encoder": "opusenc --bitrate K --vbr / opusdec --rate 24000 --float (opus-tools)",
                   "summary": summary, "clips": rows}, f, indent=1)


if __name__ == "__main__":
    main()
