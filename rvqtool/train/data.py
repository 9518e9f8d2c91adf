"""Training audio: find files, load them once into memory, draw random crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rvqtool.errors import UserError
from rvqtool.io.audio import AUDIO_SUFFIXES, read_audio
from rvqtool.io.inputs import resolve


def find_audio(sources: list[Path]) -> list[Path]:
    """The audio files the sources name, resolved as every command's inputs are (`rvqtool.io.inputs`)."""
    return [Path(found.path) for found in resolve([str(src) for src in sources], AUDIO_SUFFIXES, "audio")]


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
