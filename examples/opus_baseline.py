#!/usr/bin/env python3
"""Opus reference numbers on a clip manifest, so rvqtool models can be compared with a standard codec.

Each clip goes through `rvqtool.evaluation.opus.round_trip` (opusenc --bitrate K --vbr, opusdec
--rate 24000 --float, aligned within +-8 samples: see that module for why) and is scored with
rvqtool.metrics (DAC mel distance, SI-SDR). Bitrates are reported as measured: whole .opus file,
and Opus audio packets only (without Ogg/header overhead, the number comparable to a neural
codec's token rate). opusenc floors low requests (1.5, 3 and 4.5 kbps give the same ~4.7 kbps),
so the default pair is 6 kbps and "lowest" (1.5 requested).

`rvq eval MANIFEST --compare opus` does the same beside a model; this script is Opus alone.

Usage: python examples/opus_baseline.py /work/data/heldout --out opus.json [--kbps 6 1.5]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time

import numpy as np
import torch

from rvqtool.evaluation import opus
from rvqtool.io.audio import read_audio
from rvqtool.metrics import mel_distance, si_sdr

SR = 24000


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
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", help="directory holding manifest.csv and the clips it lists")
    ap.add_argument("--out", required=True, help="JSON file for per-clip results and means")
    ap.add_argument("--kbps", type=float, nargs="+", default=[6.0, 1.5], help="requested opusenc bitrates")
    args = ap.parse_args()
    opus.require()
    torch.set_num_threads(1)
    t0 = time.time()
    with open(os.path.join(args.root, "manifest.csv"), newline="") as f:
        clips = list(csv.DictReader(f))
    rows = []
    for c in clips:
        ref = read_audio(os.path.join(args.root, c["file"]), SR)[0]
        for kbps in args.kbps:
            result = opus.round_trip(ref, SR, kbps)
            rows.append({"file": c["file"], "category": c["category"], "seconds": len(ref) / SR,
                         "requested_kbps": kbps, "file_bytes": result.file_bytes, "packet_bytes": result.packet_bytes,
                         "xcorr_lag": result.lag, "mel_distance": mel_distance(result.audio, ref, SR),
                         "si_sdr": si_sdr(result.audio, ref)})
    summary = summarize(rows)
    print(f"{'kbps':>5} {'category':8} {'n':>3} {'kbps_file':>9} {'kbps_pkt':>8} {'mel':>6} {'si_sdr':>7}")
    for key, s in summary.items():
        kbps, cat = key.split("/")
        print(f"{kbps:>5} {cat:8} {s['n']:3d} {s['kbps_file']:9.2f} {s['kbps_payload']:8.2f} "
              f"{s['mel_distance']:6.3f} {s['si_sdr']:7.2f}")
    print(f"xcorr lags applied: {sorted({r['xcorr_lag'] for r in rows})}; {time.time() - t0:.0f} s")
    with open(args.out, "w") as f:
        json.dump({"encoder": "opusenc --bitrate K --vbr / opusdec --rate 24000 --float (opus-tools)",
                   "summary": summary, "clips": rows}, f, indent=1)


if __name__ == "__main__":
    main()
