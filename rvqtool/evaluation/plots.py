"""PNG pictures of an evaluation (matplotlib, from the `eval` extra): per file, the spectrogram of
the original above those of its reconstructions; per system, code-usage histograms per level."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path


def require() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError("--plots needs matplotlib (pip install 'rvqtool[eval]')")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "file"


def spectrogram_db(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Magnitude STFT in dB [freq, frames], floored 100 dB under the peak of 1.0 full scale."""
    window = np.hanning(n_fft).astype(np.float32)
    x = np.pad(np.asarray(x, dtype=np.float32), (n_fft // 2, n_fft // 2))
    frames = max(1, 1 + (len(x) - n_fft) // hop)
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    x = np.pad(x, (0, max(0, index.max() + 1 - len(x))))
    spectrum = np.abs(np.fft.rfft(x[index] * window, axis=1)).T
    return 20 * np.log10(np.maximum(spectrum, 1e-5))


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def spectrograms(directory: Path, name: str, sample_rate: int, panels: list[tuple[str, np.ndarray]]) -> Path:
    """One PNG for one file: `panels` is [(title, audio)], the original first."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), sharex=True, squeeze=False)
    seconds = len(panels[0][1]) / sample_rate
    for ax, (title, audio) in zip(axes[:, 0], panels):
        image = ax.imshow(spectrogram_db(audio), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=20,
                          extent=(0, seconds, 0, sample_rate / 2000))
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    path = _save(fig, Path(directory) / f"spectrogram_{_safe(name)}.png")
    plt.close(fig)
    return path


def code_usage(directory: Path, system: str, counts: np.ndarray) -> Path:
    """Histograms of code use per level [levels, codebook_size], codes sorted by use, log scale."""
    plt = _pyplot()
    levels = len(counts)
    columns = min(4, levels)
    rows = -(-levels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for level, ax in enumerate(axes.ravel()):
        if level >= levels:
            ax.axis("off")
            continue
        row = np.sort(counts[level])[::-1]
        used = int((row > 0).sum())
        ax.bar(np.arange(used), row[:used], width=1.0, color="tab:blue")
        ax.set_xlim(0, len(row))
        ax.set_yscale("log")
        ax.set_title(f"level {level + 1}: {used}/{len(row)} used", fontsize=9)
        ax.set_xlabel("codes, by use", fontsize=8)
    fig.suptitle(f"code usage: {system}", fontsize=10)
    fig.tight_layout()
    path = _save(fig, Path(directory) / f"code_usage_{_safe(system)}.png")
    plt.close(fig)
    return path
