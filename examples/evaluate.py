#!/usr/bin/env python3
"""Held-out quality of a model beside Opus, as a markdown table for the README: one row per codec,
bitrate and category (speech, its manifest subsets such as speech/real-wideband, music, env, all),
one column per metric, and a column naming the ViSQOL mode (speech mode on speech, audio mode
otherwise; "audio+speech" on a mean over both).

It runs `rvqtool.evaluation` (what `rvq eval` runs) on HELDOUT/manifest.csv, or formats the
--out JSON of an earlier `rvq eval` run given with --results. With --opus, Opus's numbers come
from examples/opus_baseline.py's JSON instead of being computed again.

Usage: python examples/evaluate.py HELDOUT_DIR [--model default] [--n-q 8 4 2] [--no-opus | --opus opus.json] [--out r.json]
       python examples/evaluate.py --results results.json [--opus opus.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rvqtool import load_codec
from rvqtool.evaluation import EvalOptions, evaluate, resolve
from rvqtool.evaluation.report import LABELS, group_name, write
from rvqtool.evaluation.scores import AUTO, VISQOL_MODES, select

CATEGORIES = ("speech", "speech/real-wideband", "speech/real-phoneband", "speech/synthetic", "music", "env", "all")
DIGITS = {"si_sdr": 1, "mel": 2, "stft": 2, "pesq": 2, "stoi": 2, "visqol": 2}


def markdown(means: list[dict], metrics: list[str]) -> str:
    """One row per codec, bitrate and group (see CATEGORIES); PESQ only on speech rows; with ViSQOL,
    a column naming its mode."""
    header = ["codec", "kbps", "category"] + [LABELS[m] for m in metrics] + (["ViSQOL mode"] if "visqol" in metrics else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    systems = list(dict.fromkeys(m["system"] for m in means))
    for system in systems:
        rows = sorted((m for m in means if m["system"] == system), key=lambda m: order.get(group_name(m), -1))
        for m in rows:
            cells = ["-" if m.get(k) is None or (k == "pesq" and m["category"] != "speech") else f"{m[k]:.{DIGITS[k]}f}"
                     for k in metrics] + ([m.get("visqol_mode", "-")] if "visqol" in metrics else [])
            lines.append(f"| {system} | {m['kbps_measured']:.2f} | {group_name(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("heldout", type=Path, nargs="?")
    parser.add_argument("--results", type=Path, help="format this `rvq eval --out` JSON instead of evaluating")
    parser.add_argument("--model", default="default")
    parser.add_argument("--n-q", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--no-opus", action="store_true")
    parser.add_argument("--opus", type=Path, help="Opus's numbers from this examples/opus_baseline.py JSON (not run again)")
    parser.add_argument("--visqol-mode", default=AUTO, choices=(AUTO, *VISQOL_MODES))
    parser.add_argument("--out", type=Path, help="also write every number (.json or .csv)")
    args = parser.parse_args()
    if args.results:
        result = json.loads(args.results.read_text())
    elif args.heldout:
        torch.set_num_threads(1)
        codec = load_codec(args.model)
        options = EvalOptions(tuple(args.n_q), select(args.metrics), compare_opus=not (args.no_opus or args.opus),
                              visqol_mode=args.visqol_mode)
        result = evaluate(codec, resolve([str(args.heldout / "manifest.csv")]), options)
        if args.out:
            write(args.out, result)
    else:
        parser.error("give HELDOUT_DIR or --results")
    print(f"model {result['model']} ({result['model_sha256'][:12]}), {len({r['file'] for r in result['files']})} clips")
    means = result["means"]
    if args.opus:
        baseline = json.loads(args.opus.read_text())
        if baseline["metrics"] != result["metrics"]:
            parser.error(f"{args.opus} has metrics {baseline['metrics']}, the model {result['metrics']}")
        means = means + baseline["means"]
    print(markdown(means, result["metrics"]))


if __name__ == "__main__":
    main()
