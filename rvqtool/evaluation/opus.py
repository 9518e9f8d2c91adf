"""Opus as a reference codec: a round trip through opus-tools (`opusenc --vbr`, `opusdec --float`)
at a requested bitrate, aligned to the input and measured in real packet bytes.

opusdec honours the Ogg pre-skip and end granule, so its output has the input's length and, in
CELT mode, lag 0; at 6 kbps and below (SILK mode) it lags by 1-2 samples, which costs up to
~0.7 dB SI-SDR. So the decoded signal is shifted by its integer cross-correlation peak, searched
only within +-MAX_LAG samples: a wider search lets noise-like clips, whose waveform a low-rate
codec does not keep, pick spurious peaks (seen: +57 / -36 samples at +-40 ms).

opusenc floors low requests: 1.5, 3 and 4.5 kbps decode to the same audio (~4.7 kbps of packets),
so the measured packet rate is reported beside the requested one.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from rvqtool.errors import UserError

DESCRIPTION = "opusenc --bitrate K --vbr, opusdec --rate R --float (opus-tools), aligned within +-8 samples"
MAX_LAG = 8  # samples (0.33 ms at 24 kHz): covers the SILK-mode lag, too narrow for spurious peaks


@dataclass
class OpusResult:
    audio: np.ndarray        # decoded, aligned, at the input's length and rate
    file_bytes: int          # the whole .opus file (Ogg pages and headers included)
    packet_bytes: int        # Opus audio packets only: the number comparable to a token rate
    lag: int                 # samples the decoded signal was shifted by


def available() -> bool:
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def require() -> None:
    if not available():
        raise UserError("--compare opus needs opusenc and opusdec on PATH (Debian/Ubuntu: apt install opus-tools)")


def packet_bytes(data: bytes) -> int:
    """Bytes of Opus audio packets in an Ogg Opus stream: every packet after OpusHead and OpusTags."""
    sizes, current, pos = [], 0, 0
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {pos}")
        n_segments = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + n_segments]
        for value in lacing:
            current += value
            if value < 255:
                sizes.append(current)
                current = 0
        pos += 27 + n_segments + sum(lacing)
    return sum(sizes[2:])


def lag_of(estimate: np.ndarray, reference: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """Delay of estimate relative to reference (samples) at the cross-correlation peak within +-max_lag."""
    n = len(estimate) + len(reference)
    xcorr = np.fft.irfft(np.fft.rfft(estimate, n) * np.conj(np.fft.rfft(reference, n)), n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(xcorr[lags])])


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the end to n samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def align(decoded: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, int]:
    """Undo the decoder's residual delay (lag > 0: drop leading samples; < 0: pad zeros) at the reference's length."""
    lag = lag_of(fit_length(decoded, len(reference)), reference)
    shifted = decoded[lag:] if lag >= 0 else np.pad(decoded, (-lag, 0))
    return fit_length(shifted, len(reference)), lag


def round_trip(reference: np.ndarray, sample_rate: int, kbps: float) -> OpusResult:
    """Encode mono float audio with opusenc at `kbps` (VBR), decode at `sample_rate`, align."""
    with tempfile.TemporaryDirectory(prefix="rvq-opus-") as tmp:
        source, encoded, decoded = (Path(tmp) / name for name in ("in.wav", "x.opus", "out.wav"))
        sf.write(str(source), reference, sample_rate, subtype="PCM_24")
        for argv in (["opusenc", "--quiet", "--bitrate", f"{kbps:g}", "--vbr", str(source), str(encoded)],
                     ["opusdec", "--quiet", "--rate", str(sample_rate), "--float", str(encoded), str(decoded)]):
            run = subprocess.run(argv, capture_output=True, text=True)
            if run.returncode != 0:
                raise UserError(f"{argv[0]} failed: {run.stderr.strip() or run.returncode}")
        audio, rate = sf.read(str(decoded), dtype="float32", always_2d=True)
        if rate != sample_rate:
            raise UserError(f"opusdec wrote {rate} Hz, asked for {sample_rate} Hz")
        data = encoded.read_bytes()
    aligned, lag = align(audio[:, 0], reference)
    return OpusResult(aligned, len(data), packet_bytes(data), lag)
