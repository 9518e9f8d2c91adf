"""Reconstruction metrics. `mel_distance` follows DAC's definition so numbers compare with the field:
log10 mel magnitudes (clamped at 1e-5), L1, summed over windows 32..2048 with 5..320 mel bands,
hop = window / 4, Hann window, centred STFT, Slaney mel filters (as librosa builds them).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


@functools.lru_cache(maxsize=64)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters [n_mels, n_fft // 2 + 1] (librosa's defaults)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class MultiScaleMelDistance(nn.Module):
    """Differentiable DAC mel distance between batches of waveforms [..., T]; also the training loss."""

    def __init__(self, sample_rate: int, windows=MEL_WINDOWS, bands=MEL_BANDS, clamp_eps: float = 1e-5):
        super().__init__()
        self.windows, self.clamp_eps = tuple(windows), clamp_eps
        for w, b in zip(windows, bands):
            self.register_buffer(f"mel_{w}", torch.from_numpy(mel_filters(sample_rate, w, b)), persistent=False)
            self.register_buffer(f"window_{w}", torch.hann_window(w), persistent=False)

    def log_mel(self, x: torch.Tensor, window: int) -> torch.Tensor:
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft=window, hop_length=window // 4,
                          window=getattr(self, f"window_{window}"), center=True, return_complex=True)
        mel = getattr(self, f"mel_{window}") @ spec.abs()
        return mel.clamp(min=self.clamp_eps).log10()

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return sum((self.log_mel(estimate, w) - self.log_mel(reference, w)).abs().mean() for w in self.windows)


class MultiScaleSTFTDistance(nn.Module):
    """L1 on log magnitudes plus spectral convergence, over several STFT sizes."""

    def __init__(self, windows=(256, 512, 1024, 2048)):
        super().__init__()
        self.windows = tuple(windows)
        for w in windows:
            self.register_buffer(f"window_{w}", torch.hann_window(w), persistent=False)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for w in self.windows:
            kw = dict(n_fft=w, hop_length=w // 4, window=getattr(self, f"window_{w}"), return_complex=True)
            e = torch.stft(estimate.reshape(-1, estimate.shape[-1]), **kw).abs()
            r = torch.stft(reference.reshape(-1, reference.shape[-1]), **kw).abs()
            total = total + (e.clamp(min=1e-5).log10() - r.clamp(min=1e-5).log10()).abs().mean()
            total = total + torch.linalg.norm(r - e) / torch.linalg.norm(r).clamp(min=1e-5)
        return total


@functools.lru_cache(maxsize=4)
def _mel_metric(sample_rate: int) -> MultiScaleMelDistance:
    return MultiScaleMelDistance(sample_rate)


def mel_distance(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """DAC multi-scale mel distance of two equal-length signals (lower is better)."""
    with torch.no_grad():
        e = torch.as_tensor(np.asarray(estimate, dtype=np.float32))
        r = torch.as_tensor(np.asarray(reference, dtype=np.float32))
        return float(_mel_metric(sample_rate)(e, r))


def si_sdr(estimate: np.ndarray, reference: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better)."""
    e = np.asarray(estimate, dtype=np.float64).ravel()
    r = np.asarray(reference, dtype=np.float64).ravel()
    e, r = e - e.mean(), r - r.mean()
    target = (e @ r) / (r @ r + eps) * r
    noise = e - target
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))
