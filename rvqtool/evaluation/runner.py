"""`evaluate`: every file through the codec (and optionally Opus at the same bitrates), scored.

Each file is read once, mono at the model's rate; for each n_q it is encoded and decoded
(timed separately: × real time = audio seconds / wall seconds) and scored against the original.
A model that decodes to another rate (NeuCodec: 24 kHz from 16 kHz) is scored at its input rate,
its decode resampled back (the input holds nothing above that rate's band), over the samples its
codes cover (NeuCodec codes whole frames only).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rvqtool.codec import Codec
from rvqtool.errors import UserError
from rvqtool.evaluation import opus, plots
from rvqtool.evaluation.inputs import Item
from rvqtool.evaluation.report import summarize
from rvqtool.evaluation.scores import AUTO, check_visqol_mode, score, visqol_mode
from rvqtool.evaluation.usage import CodeUsage
from rvqtool.io.audio import read_audio, resample


@dataclass
class EvalOptions:
    n_qs: tuple[int, ...]
    metrics: tuple[str, ...]
    compare_opus: bool = False
    plots_dir: Path | None = None
    visqol_mode: str = AUTO   # speech | audio | auto (by category)


@dataclass
class Progress:
    """Callbacks for the caller: a file done, a file failed (the run goes on)."""
    done: Callable[[Item], None] = lambda item: None
    failed: Callable[[Item, str], None] = lambda item, message: None
    failures: list[tuple[str, str]] = field(default_factory=list)


def system_name(codec: Codec, n_q: int) -> str:
    return f"{codec.name} {n_q}q"


def opus_name(kbps: float) -> str:
    return f"opus {kbps:g}k"


def _clean(scores: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in scores.items()}


def _base(item: Item, seconds: float, options: EvalOptions) -> dict:
    """What every row of a file says about the file: name, groups, length, the ViSQOL mode it is scored in."""
    base = {"file": item.name, "category": item.category, "seconds": seconds}
    if item.subset:
        base["subset"] = item.subset
    if "visqol" in options.metrics:
        base["visqol_mode"] = visqol_mode(options.visqol_mode, item.category)
    return base


def _scores(estimate, reference, sample_rate: int, options: EvalOptions, base: dict) -> dict[str, float | None]:
    return _clean(score(estimate, reference, sample_rate, options.metrics, base.get("visqol_mode", "audio")))


def _opus_row(reference, sample_rate: int, kbps: float, options: EvalOptions, base: dict):
    """Opus at `kbps` on one file: its row and its decoded audio."""
    result = opus.round_trip(reference, sample_rate, kbps)
    row = {**base, "system": opus_name(kbps), "n_q": None, "kbps": kbps,
           "payload_bytes": result.packet_bytes, "file_bytes": result.file_bytes, "opus_lag": result.lag,
           **_scores(result.audio, reference, sample_rate, options, base)}
    return row, result


def _finish(rows: list[dict], seconds: float) -> list[dict]:
    """Measured bitrate and × real time of each row."""
    for row in rows:
        row["kbps_measured"] = row["payload_bytes"] * 8 / seconds / 1000
        for what in ("encode", "decode"):
            if f"{what}_seconds" in row:
                row[f"{what}_xrt"] = seconds / max(row[f"{what}_seconds"], 1e-9)
    return rows


def _evaluate_file(codec: Codec, item: Item, options: EvalOptions, usage: dict[str, CodeUsage]) -> list[dict]:
    reference = read_audio(item.path, codec.sample_rate)[0]
    seconds = len(reference) / codec.sample_rate
    base = _base(item, seconds, options)
    rows, panels = [], [("original", reference)]
    for n_q in options.n_qs:
        start = time.perf_counter()
        codes = codec.encode(reference, n_q=n_q)
        encoded = time.perf_counter()
        decoded = codec.decode(codes)[0]
        decode_seconds = time.perf_counter() - encoded
        decoded = resample(decoded, codec.output_sample_rate, codec.sample_rate)[:codes.meta.length]
        name = system_name(codec, n_q)
        usage[name].add(codes.codes)
        rows.append({**base, "system": name, "n_q": n_q, "kbps": codec.bandwidth_kbps(n_q),
                     "payload_bytes": codes.codes.size * codec.config.bits_per_code / 8,
                     "encode_seconds": encoded - start, "decode_seconds": decode_seconds,
                     **_scores(decoded, reference[:len(decoded)], codec.sample_rate, options, base)})
        panels.append((f"{name} ({codec.bandwidth_kbps(n_q):g} kbps)", decoded))
    if options.compare_opus:
        for n_q in options.n_qs:
            kbps = codec.bandwidth_kbps(n_q)
            row, result = _opus_row(reference, codec.sample_rate, kbps, options, base)
            rows.append(row)
            panels.append((f"{opus_name(kbps)} ({result.packet_bytes * 8 / seconds / 1000:.2f} kbps of packets)",
                           result.audio))
    _finish(rows, seconds)
    if options.plots_dir is not None:
        plots.spectrograms(options.plots_dir, item.name, codec.sample_rate, panels)
    return rows


def _each(items: list[Item], progress: Progress, rows_of: Callable[[Item], list[dict]]) -> list[dict]:
    """Rows of every file; a file that fails is reported and skipped."""
    rows: list[dict] = []
    for item in items:
        try:
            rows += rows_of(item)
        except UserError as exc:
            message = str(exc) if str(item.path) in str(exc) else f"{item.name}: {exc}"
            progress.failures.append((item.name, message))
            progress.failed(item, message)
            continue
        progress.done(item)
    return rows


def evaluate(codec: Codec, items: list[Item], options: EvalOptions, progress: Progress | None = None) -> dict:
    """Scores per file, means, and code usage per level; files that fail are reported and skipped."""
    progress = progress or Progress()
    if not options.n_qs:
        raise UserError("no --n-q given")
    check_visqol_mode(options.visqol_mode)
    for n_q in options.n_qs:
        codec.levels_for(n_q)  # validates
    if options.compare_opus:
        opus.require()
    if options.plots_dir is not None:
        plots.require()
    usage = {system_name(codec, n_q): CodeUsage.empty(codec.rows(n_q), codec.config.codebook_size) for n_q in options.n_qs}
    rows = _each(items, progress, lambda item: _evaluate_file(codec, item, options, usage))
    result = {"model": codec.name, "model_sha256": codec.sha256, "sample_rate": codec.sample_rate,
              "metrics": list(options.metrics), "files": rows, "means": summarize(rows, options.metrics) if rows else [],
              "code_usage": {name: u.summary() for name, u in usage.items()}}
    if options.plots_dir is not None and rows:
        for name, u in usage.items():
            plots.code_usage(options.plots_dir, name, u.counts)
    return result


def evaluate_opus(items: list[Item], sample_rate: int, kbps: tuple[float, ...], options: EvalOptions,
                  progress: Progress | None = None) -> dict:
    """Opus alone at the given bitrates, scored as `evaluate` scores a model (same rows and means),
    so a model's results and Opus's can be computed apart and put side by side."""
    progress = progress or Progress()
    check_visqol_mode(options.visqol_mode)
    opus.require()

    def rows_of(item: Item) -> list[dict]:
        reference = read_audio(item.path, sample_rate)[0]
        base = _base(item, len(reference) / sample_rate, options)
        return _finish([_opus_row(reference, sample_rate, k, options, base)[0] for k in kbps], base["seconds"])

    rows = _each(items, progress, rows_of)
    return {"model": "opus", "encoder": opus.DESCRIPTION, "sample_rate": sample_rate, "metrics": list(options.metrics),
            "files": rows, "means": summarize(rows, options.metrics) if rows else []}
