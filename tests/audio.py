"""Audio for tests: the shipped example clips, and small signals made here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "audio"
CLIPS = {name: EXAMPLES / f"demo_{name}.flac" for name in ("speech", "music", "env")}


def tone(seconds: float, sample_rate: int = 24000, seed: int = 0) -> np.ndarray:
    """Harmonics under a syllable-like envelope plus a little noise: cheap, deterministic, speech-ish."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110 + 60 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6) / k for k in range(1, 12))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    return (0.1 * x * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def write(path: Path, x: np.ndarray, sample_rate: int = 24000, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), np.asarray(x).T, sample_rate, subtype=subtype)
    return path
