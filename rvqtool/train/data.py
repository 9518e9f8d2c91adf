"""Training audio: find files, load them once into memory, draw random crops."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from rvqtool.errors import UserError
from rvqtool.io.audio import AUDIO_SUFFIXES, read_audio


def find_audio(sources: list[Path]) -> list[Path]:
    """Audio files under directories, listed in a manifest (.txt: one path a line; .csv/.tsv: a
    `path` or `file` column; relative paths are taken from the manifest's folder), or given directly."""
    files: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            files += sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        elif src.suffix.lower() in (".csv", ".tsv", ".txt"):
            files += _manifest(src)
        elif src.exists():
            files.append(src)
        else:
            raise UserError(f"{src}: no such file or directory")
    return files


def _manifest(path: Path) -> list[Path]:
    text = path.read_text().splitlines()
    if path.suffix.lower() == ".txt":
        rows = [line.strip() for line in text if line.strip() and not line.startswith("#")]
    else:
        reader = csv.DictReader(text, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        column = next((c for c in ("path", "file") if c in (reader.fieldnames or [])), None)
        if column is None:
            raise UserError(f"{path}: manifest needs a 'path' or 'file' column")
        rows = [r[column] for r in reader]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, rows)]


class CropSampler:
    """Random fixed-length crops from in-memory audio, drawn in proportion to file length,
    skipping near-silent crops, with random gain so the model meets many levels."""

    def __init__(self, files: list[Path], sample_rate: int, crop_samples: int,
                 gain_db: tuple[float, float] = (-12.0, 3.0), silence_db: float = -55.0):
        self.clips = [c for c in (read_audio(f, sample_rate)[0] for f in files) if len(c) >= crop_samples]
        if not self.clips:
            raise UserError(f"no training file is at least {crop_samples / sample_rate:.2f} s long")
        lengths = torch.tensor([len(c) - crop_samples + 1 for c in self.clips], dtype=torch.float64)
        self.weights = lengths / lengths.sum()
        self.sample_rate, self.crop_samples = sample_rate, crop_samples
        self.gain_db, self.silence_db = gain_db, silence_db

    @property
    def seconds(self) -> float:
        return sum(len(c) for c in self.clips) / self.sample_rate

    def batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        out = np.empty((size, 1, self.crop_samples), dtype=np.float32)
        for i in range(size):
            for _ in range(10):
                clip = self.clips[int(torch.multinomial(self.weights, 1, generator=generator))]
                start = int(torch.randint(len(clip) - self.crop_samples + 1, (1,), generator=generator))
                crop = clip[start:start + self.crop_samples]
                if 20 * np.log10(np.sqrt(np.mean(crop ** 2)) + 1e-9) > self.silence_db:
                    break
            lo, hi = self.gain_db
            gain = 10 ** ((lo + (hi - lo) * float(torch.rand((), generator=generator))) / 20)
            out[i, 0] = np.clip(crop * gain, -1.0, 1.0)
        return torch.from_numpy(out)
