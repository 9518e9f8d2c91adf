#!/usr/bin/env python3
"""Held-out quality of a model beside Opus, as a markdown table for the README: one row per codec,
bitrate and category (speech / music / env / all), one column per metric.

It runs `rvqtool.evaluation` (what `rvq eval` runs) on HELDOUT/manifest.csv, or formats the
--out JSON of an earlier `rvq eval` run given with --results.

Usage: python examples/evaluate.py HELDOUT_DIR [--model default] [--n-q 8 4 2] [--no-opus] [--out r.json]
       python examples/evaluate.py --results results.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rvqtool import load_codec
from rvqtool.evaluation import EvalOptions, evaluate, resolve
from rvqtool.evaluation.report import LABELS, write
from rvqtool.evaluation.scores import select

CATEGORIES = ("speech", "music", "env", "all")
DIGITS = {"si_sdr": 1, "mel": 2, "stft": 2, "pesq": 2, "stoi": 2, "visqol": 2}


def markdown(result: dict) -> str:
    """One row per codec, bitrate and category (speech, music, env, all); PESQ only on speech rows."""
    metrics = result["metrics"]
    header = ["codec", "kbps", "category"] + [LABELS[m] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    systems = list(dict.fromkeys(m["system"] for m in result["means"]))
    for system in systems:
        rows = sorted((m for m in result["means"] if m["system"] == system), key=lambda m: order.get(m["category"], -1))
        for m in rows:
            cells = ["-" if m.get(k) is None or (k == "pesq" and m["category"] != "speech") else f"{m[k]:.{DIGITS[k]}f}"
                     for k in metrics]
            lines.append(f"| {system} | {m['kbps_measured']:.2f} | {m['category']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("heldout", type=Path, nargs="?")
    parser.add_argument("--results", type=Path, help="format this `rvq eval --out` JSON instead of evaluating")
    parser.add_argument("--model", default="default")
    parser.add_argument("--n-q", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--no-opus", action="store_true")
    parser.add_argument("--out", type=Path, help="also write every number (.json or .csv)")
    args = parser.parse_args()
    if args.results:
        result = json.loads(args.results.read_text())
    elif args.heldout:
        torch.set_num_threads(1)
        codec = load_codec(args.model)
        options = EvalOptions(tuple(args.n_q), select(args.metrics), compare_opus=not args.no_opus)
        result = evaluate(codec, resolve([str(args.heldout / "manifest.csv")]), options)
        if args.out:
            write(args.out, result)
    else:
        parser.error("give HELDOUT_DIR or --results")
    print(f"model {result['model']} ({result['model_sha256'][:12]}), {len({r['file'] for r in result['files']})} clips")
    print(markdown(result))


if __name__ == "__main__":
    main()
