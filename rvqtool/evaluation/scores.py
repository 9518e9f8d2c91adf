"""Per-file quality scores of a reconstruction against its reference.

Core metrics (always there): SI-SDR, DAC's multi-scale mel distance, multi-scale STFT distance.
Perceptual metrics come from the optional `eval` extra and are computed only where installed:
PESQ (wide band, at 16 kHz; meant for speech), STOI, ViSQOL v3 in one of its two modes: speech
(16 kHz, with the deep-lattice MOS mapping the C++ ViSQOL uses by default) or audio (48 kHz, SVR
mapping). `visqol_mode` picks speech mode for files of category `speech` and audio mode otherwise,
as ViSQOL's authors advise; the two modes' scores are on different scales and are not averaged
together silently (reports name the mode).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import sys
from typing import Callable

import numpy as np
import soxr
import torch

from rvqtool.errors import UsageError, UserError
from rvqtool.metrics import MultiScaleSTFTDistance, mel_distance, si_sdr

CORE = ("si_sdr", "mel", "stft")
PERCEPTUAL = {"pesq": ("pesq",), "stoi": ("pystoi",), "visqol": ("visqol", "ai_edge_litert")}  # metric -> modules
VISQOL_MODES = ("speech", "audio")
AUTO = "auto"       # speech mode for the category `speech`, audio mode for every other
SPEECH = "speech"   # the category that auto scores in speech mode
ALL = CORE + tuple(PERCEPTUAL)
HIGHER_IS_BETTER = {"si_sdr": True, "mel": False, "stft": False, "pesq": True, "stoi": True, "visqol": True}


def installed(metric: str) -> bool:
    """ViSQOL counts as installed only with its lattice runtime: without it, speech mode falls back
    to a polynomial mapping that scores 1-2 points higher, so numbers would depend on the machine."""
    return metric in CORE or all(importlib.util.find_spec(module) is not None for module in PERCEPTUAL[metric])


def select(spec: str) -> tuple[str, ...]:
    """Metric names from a comma list; "all" is the core ones plus every installed perceptual one.

    Naming a perceptual metric whose package is missing is an error, not a silent skip."""
    if spec.strip() == "all":
        return tuple(m for m in ALL if installed(m))
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown or not names:
        raise UsageError(f"--metrics: unknown {', '.join(unknown) or '(empty)'}; choose from all, {', '.join(ALL)}")
    missing = [n for n in names if not installed(n)]
    if missing:
        raise UserError(f"--metrics {','.join(missing)}: not installed (pip install 'rvqtool[eval]')")
    return tuple(dict.fromkeys(names))


@functools.lru_cache(maxsize=1)
def _stft_metric() -> MultiScaleSTFTDistance:
    return MultiScaleSTFTDistance()


def stft_distance(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Log-magnitude L1 plus spectral convergence over STFT sizes 256..2048 (lower is better)."""
    with torch.no_grad():
        return float(_stft_metric()(torch.as_tensor(estimate, dtype=torch.float32),
                                    torch.as_tensor(reference, dtype=torch.float32)))


def _pesq(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    from pesq import PesqError, pesq

    try:
        return float(pesq(16000, soxr.resample(reference, sample_rate, 16000),
                          soxr.resample(estimate, sample_rate, 16000), "wb"))
    except PesqError:  # e.g. no speech found in the reference: no score, not a failure
        return math.nan


def _stoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    from pystoi import stoi

    return float(stoi(reference, estimate, sample_rate))


def check_visqol_mode(choice: str) -> str:
    if choice not in (AUTO, *VISQOL_MODES):
        raise UsageError(f"--visqol-mode: choose from {AUTO}, {', '.join(VISQOL_MODES)}; got {choice!r}")
    return choice


def visqol_mode(choice: str, category: str) -> str:
    """The ViSQOL mode a file is scored in: the one asked for, or with `auto`, by its category."""
    if check_visqol_mode(choice) != AUTO:
        return choice
    return "speech" if category == SPEECH else "audio"


VISQOL_RATE = {"speech": 16000, "audio": 48000}


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: the lattice runtime's C++ logs an INFO line on every load."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=2)
def _visqol_api(mode: str):
    """One ViSQOL instance per mode and process (its numba kernels are not safe across threads)."""
    from visqol import VisqolApi

    api = VisqolApi()
    if mode == "speech":
        with _quiet_stderr():
            api.create(mode="speech", use_lattice_model=True)
    else:
        api.create(mode="audio")
    return api


def _visqol(estimate: np.ndarray, reference: np.ndarray, sample_rate: int, mode: str) -> float:
    """ViSQOL v3 MOS-LQO (1..5) in `mode`; both signals are resampled to the mode's rate."""
    rate = VISQOL_RATE[mode]
    ref = soxr.resample(reference, sample_rate, rate).astype(np.float64)
    est = soxr.resample(estimate, sample_rate, rate).astype(np.float64)
    try:
        return float(_visqol_api(mode).measure_from_arrays(ref, est, rate).moslqo)
    except ValueError as exc:  # shorter than one ViSQOL patch (~1 s in audio mode): no score, not a failure
        if "patch size" in str(exc):
            return math.nan
        raise
    except IndexError:  # speech mode found no patch to score (too short or too quiet): likewise
        return math.nan


SCORERS: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "si_sdr": lambda e, r, sr: si_sdr(e, r),
    "mel": mel_distance,
    "stft": lambda e, r, sr: stft_distance(e, r),
    "pesq": _pesq,
    "stoi": _stoi,
}


def score(estimate: np.ndarray, reference: np.ndarray, sample_rate: int, metrics: tuple[str, ...],
          visqol: str = "audio") -> dict[str, float]:
    """The chosen metrics of a mono reconstruction against its reference (same length); ViSQOL in
    mode `visqol` (speech or audio)."""
    estimate = np.asarray(estimate, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {estimate.shape} and reference {reference.shape} differ in shape")
    if visqol not in VISQOL_MODES:
        raise ValueError(f"ViSQOL mode {visqol!r} is not one of {VISQOL_MODES}")
    return {name: _visqol(estimate, reference, sample_rate, visqol) if name == "visqol"
            else SCORERS[name](estimate, reference, sample_rate) for name in metrics}
