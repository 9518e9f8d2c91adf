#!/usr/bin/env python3
"""Opus reference numbers on a clip manifest, scored exactly as `rvq eval` scores a model, so that
rvqtool models can be compared with a standard codec.

Each clip goes through `rvqtool.evaluation.opus.round_trip` (opusenc --bitrate K --vbr, opusdec
--rate 24000 --float, aligned within +-8 samples: see that module for why) and is scored with
rvqtool.evaluation.scores: the core metrics plus PESQ-wb, STOI and ViSQOL where installed, ViSQOL
in speech mode for speech clips and audio mode otherwise (--visqol-mode; each row names its mode).
Means come per category, per manifest subset (e.g. speech/real-wideband) and overall. Bitrates
are reported as measured: Opus audio packets only (without Ogg/header overhead, the number
comparable to a neural codec's token rate) and the whole file. opusenc floors low requests (1.5,
3 and 4.5 kbps give the same ~4.7 kbps), so the default pair is 6 kbps and "lowest" (1.5 requested).

`rvq eval MANIFEST --compare opus` does the same beside a model; this script is Opus alone, and
examples/evaluate.py --opus puts its JSON beside a model's numbers.

Usage: python examples/opus_baseline.py HELDOUT_DIR --out opus.json [--kbps 6 1.5] [--metrics all]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from rvqtool.evaluation import EvalOptions, Progress, resolve
from rvqtool.evaluation.report import table, write
from rvqtool.evaluation.runner import evaluate_opus
from rvqtool.evaluation.scores import AUTO, VISQOL_MODES, select

SR = 24000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="directory holding manifest.csv and the clips it lists")
    ap.add_argument("--out", type=Path, required=True, help="JSON file for per-clip results and means")
    ap.add_argument("--kbps", type=float, nargs="+", default=[6.0, 1.5], help="requested opusenc bitrates")
    ap.add_argument("--metrics", default="all")
    ap.add_argument("--visqol-mode", default=AUTO, choices=(AUTO, *VISQOL_MODES))
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    options = EvalOptions((), select(args.metrics), visqol_mode=args.visqol_mode)
    progress = Progress(failed=lambda item, message: print(f"error: {message}", file=sys.stderr))
    result = evaluate_opus(resolve([str(args.root / "manifest.csv")]), SR, tuple(args.kbps), options, progress)
    print(table(result["means"], options.metrics, "category"))
    print(f"xcorr lags applied: {sorted({r['opus_lag'] for r in result['files']})}; {time.time() - start:.0f} s")
    write(args.out, result)


if __name__ == "__main__":
    main()
