"""Per-file quality scores of a reconstruction against its reference.

Core metrics (always there): SI-SDR, DAC's multi-scale mel distance, multi-scale STFT distance.
Perceptual metrics come from the optional `eval` extra and are computed only where installed:
PESQ (wide band, at 16 kHz; meant for speech), STOI, ViSQOL (audio mode, at 48 kHz).
"""
from __future__ import annotations

import functools
import importlib.util
import math
from typing import Callable

import numpy as np
import soxr
import torch

from rvqtool.errors import UserError
from rvqtool.metrics import MultiScaleSTFTDistance, mel_distance, si_sdr

CORE = ("si_sdr", "mel", "stft")
PERCEPTUAL = {"pesq": "pesq", "stoi": "pystoi", "visqol": "visqol"}   # metric -> module it needs
ALL = CORE + tuple(PERCEPTUAL)
HIGHER_IS_BETTER = {"si_sdr": True, "mel": False, "stft": False, "pesq": True, "stoi": True, "visqol": True}


def installed(metric: str) -> bool:
    return metric in CORE or importlib.util.find_spec(PERCEPTUAL[metric]) is not None


def select(spec: str) -> tuple[str, ...]:
    """Metric names from a comma list; "all" is the core ones plus every installed perceptual one.

    Naming a perceptual metric whose package is missing is an error, not a silent skip."""
    if spec.strip() == "all":
        return tuple(m for m in ALL if installed(m))
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown or not names:
        raise UserError(f"--metrics: unknown {', '.join(unknown) or '(empty)'}; choose from all, {', '.join(ALL)}")
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


@functools.lru_cache(maxsize=1)
def _visqol_api():
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="audio")
    return api


def _visqol(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """ViSQOL v3 audio mode (MOS-LQO, 1..5); it works at 48 kHz, so both signals are resampled."""
    ref = soxr.resample(reference, sample_rate, 48000).astype(np.float64)
    est = soxr.resample(estimate, sample_rate, 48000).astype(np.float64)
    return float(_visqol_api().measure_from_arrays(ref, est, 48000).moslqo)


SCORERS: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "si_sdr": lambda e, r, sr: si_sdr(e, r),
    "mel": mel_distance,
    "stft": lambda e, r, sr: stft_distance(e, r),
    "pesq": _pesq,
    "stoi": _stoi,
    "visqol": _visqol,
}


def score(estimate: np.ndarray, reference: np.ndarray, sample_rate: int, metrics: tuple[str, ...]) -> dict[str, float]:
    """The chosen metrics of a mono reconstruction against its reference (same length)."""
    estimate = np.asarray(estimate, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {estimate.shape} and reference {reference.shape} differ in shape")
    return {name: SCORERS[name](estimate, reference, sample_rate) for name in metrics}
