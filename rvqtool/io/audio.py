"""Reading and writing audio: any format soundfile reads, any rate (soxr), any channel count.

Audio is returned as float32 [channels, samples]. Long files are streamed in blocks so memory
stays bounded whatever the file's length. '-' reads stdin / writes stdout.
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf
import soxr

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path

AUDIO_SUFFIXES = frozenset("." + f.lower() for f in sf.available_formats()) | {".oga", ".opus"}
BLOCK_SECONDS = 30.0


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _source(path: str | Path) -> str | BinaryIO:
    if str(path) == "-":
        return io.BytesIO(sys.stdin.buffer.read())
    return str(path)


def _open(source: str | BinaryIO, name: str) -> sf.SoundFile:
    if isinstance(source, str):
        p = Path(source)
        if not p.exists():
            raise UserError(f"{name}: no such file")
        if p.is_dir():
            raise UserError(f"{name}: is a directory")
        if p.stat().st_size == 0:
            raise UserError(f"{name}: empty file")
    try:
        return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(": ", 1)[-1].strip() or "unreadable"
        raise UserError(f"{name}: not a readable audio file ({detail})")
    except PermissionError:
        raise UserError(f"{name}: permission denied")


def audio_info(path: str | Path) -> AudioInfo:
    with _open(_source(path), str(path)) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)


def stream_audio(path: str | Path, sample_rate: int, mono: bool = True,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yields float32 blocks [channels, n] at `sample_rate` (downmixed when `mono`).

    Raises UserError for missing, unreadable or empty audio and for NaN/inf samples."""
    name = str(path)
    with _open(_source(path), name) as f:
        if f.frames == 0:
            raise UserError(f"{name}: audio has no samples")
        channels = 1 if mono else f.channels
        resampler = None if f.samplerate == sample_rate else soxr.ResampleStream(
            f.samplerate, sample_rate, channels, dtype="float32", quality="HQ")
        block = max(1, int(block_seconds * f.samplerate))
        total = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise UserError(f"{name}: corrupt audio ({exc})")
            last = len(data) < block
            if not np.isfinite(data).all():
                raise UserError(f"{name}: audio holds NaN or infinite samples")
            if mono and data.shape[1] > 1:
                data = data.mean(axis=1, keepdims=True)
            if resampler is not None:
                data = resampler.resample_chunk(np.ascontiguousarray(data), last=last)
                if data.ndim == 1:
                    data = data[:, None]
            total += len(data)
            if len(data):
                yield np.ascontiguousarray(data.T)
            if last:
                break
        if total == 0:
            raise UserError(f"{name}: audio has no samples")


def read_audio(path: str | Path, sample_rate: int, mono: bool = True) -> np.ndarray:
    """The whole file as float32 [channels, samples] at `sample_rate`."""
    return np.concatenate(list(stream_audio(path, sample_rate, mono)), axis=1)


def write_audio(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write [channels, samples] (clipped to [-1, 1]) atomically; '-' writes WAV to stdout.

    The format follows the suffix (wav, flac, ogg); 16-bit PCM for wav."""
    data = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0).T
    if str(path) == "-":
        buf = io.BytesIO()
        sf.write(buf, data, sample_rate, format="WAV", subtype="PCM_16")
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    if fmt not in sf.available_formats():
        raise UserError(f"{path}: cannot write audio with suffix '{path.suffix}' (use .wav, .flac or .ogg)")
    subtype = "PCM_16" if fmt == "WAV" else None
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")
