"""Reading and writing audio: any format soundfile reads, any rate (soxr), any channel count.

Audio is returned as float32 [channels, samples]. Long files are streamed in blocks so memory
stays bounded whatever the file's length. '-' reads stdin / writes stdout.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
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
# libsndfile's length of a stream whose header gives none: a FLAC written to a pipe
# (`ffmpeg -i x.m4a -f flac - > x.flac`) has 0 total samples in its STREAMINFO
UNKNOWN_LENGTH = 2 ** 63 - 1
COUNT_BLOCK = 1 << 16     # frames decoded at a time to count a stream of unknown length


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


_mute_lock = threading.Lock()
_mute = {"depth": 0, "saved": None}   # threads opening files at once share one muting


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Send the process's stderr (fd 2) to /dev/null for the block.

    libsndfile offers data it does not recognise to its MPEG decoder last, and mpg123 then prints
    'Note: Illegal Audio-MPEG-Header ...' lines straight to fd 2 before giving up, which would
    bury the one-line error. Only opening a file is muted, never decoding it. Counted: the first
    of overlapping blocks (threads reading headers) mutes, the last restores the real stderr."""
    with _mute_lock:
        if _mute["depth"] == 0:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no usable stderr: nothing to protect
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _mute["saved"] = saved
        _mute["depth"] += 1
    try:
        yield
    finally:
        with _mute_lock:
            _mute["depth"] -= 1
            if _mute["depth"] == 0 and _mute["saved"] is not None:
                os.dup2(_mute["saved"], 2)
                os.close(_mute["saved"])
                _mute["saved"] = None


class _SoundFile(sf.SoundFile):
    """A SoundFile that also reads streams of unknown length to their end. soundfile seeks to its
    own count after every read of a seekable file, and libsndfile cannot seek to the end of a FLAC
    stream without a length, so its last block read as corrupt; read as a pipe is read (no
    re-seek), such a stream decodes whole."""

    def seekable(self) -> bool:
        return super().seekable() and self.frames != UNKNOWN_LENGTH


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
        with _native_stderr_muted():
            return _SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(": ", 1)[-1].strip() or "unreadable"
        if "does not exist" in detail:  # libsndfile's words when its last resort, mpg123, gives up
            detail = "format not recognised"
        raise UserError(f"{name}: not a readable audio file ({detail})")
    except PermissionError:
        raise UserError(f"{name}: permission denied")


def audio_info(path: str | Path) -> AudioInfo:
    with _open(_source(path), str(path)) as f:
        return _info(f, str(path))


def _info(f: sf.SoundFile, name: str) -> AudioInfo:
    """The file's facts; a stream of unknown length is decoded to its end to count its frames (and
    left at its start)."""
    frames = f.frames
    if frames == UNKNOWN_LENGTH:
        frames = 0
        try:
            while count := len(f.read(COUNT_BLOCK, dtype="int16")):
                frames += count
            f.seek(0)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise UserError(f"{name}: corrupt audio ({exc})")
    return AudioInfo(f.samplerate, f.channels, frames, f.format, f.subtype)


def open_audio(path: str | Path, sample_rate: int, mono: bool = True,
               block_seconds: float = BLOCK_SECONDS) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """The file's own facts, and an iterator of float32 blocks [channels, n] at `sample_rate`
    (downmixed when `mono`). Opening raises UserError for missing, unreadable or empty audio;
    reading raises it for corrupt data and NaN/inf samples."""
    name = str(path)
    f = _open(_source(path), name)
    try:
        info = _info(f, name)
    except UserError:
        f.close()
        raise
    if info.frames == 0:
        f.close()
        raise UserError(f"{name}: audio has no samples")
    return info, _blocks(f, name, sample_rate, mono, block_seconds)


def _blocks(f: sf.SoundFile, name: str, sample_rate: int, mono: bool, block_seconds: float) -> Iterator[np.ndarray]:
    with f:
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


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """[samples] or [channels, samples] float32 at `from_rate` -> at `to_rate` (soxr HQ, as files are read)."""
    if from_rate == to_rate:
        return wav
    return soxr.resample(np.asarray(wav, dtype=np.float32).T, from_rate, to_rate, quality="HQ").T


def read_audio(path: str | Path, sample_rate: int, mono: bool = True) -> np.ndarray:
    """The whole file as float32 [channels, samples] at `sample_rate`."""
    return np.concatenate(list(open_audio(path, sample_rate, mono)[1]), axis=1)


def output_format(path: Path) -> tuple[str, str | None]:
    """(format, subtype) that soundfile writes for this suffix; 16-bit PCM for WAV, FLAC and AIFF."""
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: cannot write audio with suffix '{path.suffix}' (use .wav, .flac, .ogg or .aiff)")
    return fmt, None if fmt == "OGG" else "PCM_16"


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
    fmt, subtype = output_format(path)
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")
