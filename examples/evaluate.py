#!/usr/bin/env python3
"""Held-out quality of a model: mean SI-SDR and DAC mel distance per category and bitrate, with the
Opus numbers of `examples/opus_baseline.py` beside them when its JSON is given.

Usage: python examples/evaluate.py HELDOUT_DIR [--model default] [--n-q 8 4 2] [--opus opus.json] [--out r.json]
HELDOUT_DIR holds manifest.csv (file, category, ...) as written by examples/corpus/make_heldout.sh.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from rvqtool import load_codec
from rvqtool.io.audio import read_audio
from rvqtool.metrics import mel_distance, si_sdr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("heldout", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--n-q", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--opus", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    codec = load_codec(args.model)
    rows = list(csv.DictReader(open(args.heldout / "manifest.csv")))
    scores: dict[str, list] = defaultdict(list)
    clips = []
    for row in rows:
        x = read_audio(args.heldout / row["file"], codec.sample_rate)[0]
        codes = codec.encode(x)
        for n_q in args.n_q:
            y = codec.decode(codes, n_q=n_q)[0]
            result = {"file": row["file"], "category": row["category"], "n_q": n_q,
                      "kbps": codec.config.bandwidth_kbps(n_q),
                      "mel_distance": mel_distance(y, x, codec.sample_rate), "si_sdr": si_sdr(y, x)}
            clips.append(result)
            for key in (f"{n_q}/{row['category']}", f"{n_q}/all"):
                scores[key].append((result["mel_distance"], result["si_sdr"]))
    opus = json.load(open(args.opus))["summary"] if args.opus else {}
    print(f"model {codec.name} ({codec.sha256[:12]}), {len(rows)} held-out clips")
    print(f"{'kbps':>6} {'category':<8} {'mel':>7} {'SI-SDR':>7} | {'Opus 6k mel':>11} {'Opus 6k SI-SDR':>14}")
    summary = {}
    for key, values in scores.items():
        n_q, category = key.split("/")
        mel, sdr = np.mean(values, axis=0)
        summary[key] = {"n": len(values), "kbps": codec.config.bandwidth_kbps(int(n_q)),
                        "mel_distance": float(mel), "si_sdr": float(sdr)}
        ref = opus.get(f"6.0/{category}", {})
        print(f"{codec.config.bandwidth_kbps(int(n_q)):6.2f} {category:<8} {mel:7.3f} {sdr:7.2f} | "
              f"{ref.get('mel_distance', float('nan')):11.3f} {ref.get('si_sdr', float('nan')):14.2f}")
    if args.out:
        args.out.write_text(json.dumps({"model": codec.name, "sha256": codec.sha256, "summary": summary,
                                        "clips": clips}, indent=1))


if __name__ == "__main__":
    main()
