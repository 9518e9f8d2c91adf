"""A Vocos-style decoder: ConvNeXt blocks at the frame rate, then an inverse-STFT head (our code).

SEANet's decoder builds the waveform through transposed convolutions, and trained on spectral
losses alone it brings harmonics back smeared into noise. This decoder instead predicts, for each
latent frame, one STFT frame (log-magnitude and phase of n_fft = 4 x hop bins), and overlap-adds
their inverse FFTs: phase is an output, not something upsampling layers must get right, and all
the work is done at the frame rate (75 Hz), a fraction of SEANet's arithmetic. Vocos (Siuzdak,
2023) and WavTokenizer/XCodec2 decode this way.

Frame t's window is centred on the middle of its hop, so frame t owns samples [t, t + 1) x hop
as SEANet's does, and every op is local in time: windowed decoding with `context_frames` either
side gives the whole pass's samples (up to float rounding of the products).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvqtool.config import CodecConfig

KERNEL = 7         # the embedding conv's and each block's depthwise conv's width, in frames
FFT_HOPS = 4       # n_fft = FFT_HOPS x hop: each frame's window spans 4 hops (75 % overlap)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP (x3, GELU) -> per-channel scale, plus the identity."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, KERNEL, padding=KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.up = nn.Linear(dim, 3 * dim)
        self.down = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # [B, C, T]
        y = self.dw(x).transpose(1, 2)
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ISTFTDecoder(nn.Module):
    """Latent frames [B, dimension, n] -> waveform [B, 1, n·hop]; `decoder_filters` is the blocks'
    width, `decoder_layers` their number."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        if cfg.channels != 1 or cfg.causal:
            raise ValueError("the istft decoder is mono and non-causal")
        width, layers = cfg.decoder_filters, cfg.decoder_layers
        self.hop, self.n_fft, self.layers = cfg.hop_length, FFT_HOPS * cfg.hop_length, layers
        self.embed = nn.Conv1d(cfg.dimension, width, KERNEL, padding=KERNEL // 2)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(width, 1.0 / layers) for _ in range(layers))
        self.final = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, self.n_fft + 2)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(latent).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        # float32 from here on: under bf16 autocast (the GPU recipe) the head gives bfloat16, and
        # there is no bfloat16 complex type for the inverse FFT
        log_mag, phase = self.head(self.final(x.transpose(1, 2))).float().chunk(2, dim=-1)   # [B, T, n_fft/2 + 1]
        mag = torch.exp(log_mag).clamp(max=1e2)
        frames = torch.fft.irfft(torch.complex(mag * torch.cos(phase), mag * torch.sin(phase)), n=self.n_fft)
        return self._overlap_add(frames * self.window)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """Windowed frames [B, T, n_fft] -> [B, 1, T·hop], normalised by the summed squared window;
        frame t's window starts (n_fft - hop) / 2 before sample t·hop."""
        t = frames.shape[1]
        size = (t - 1) * self.hop + self.n_fft
        fold = lambda x: F.fold(x, (1, size), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]   # noqa: E731
        y = fold(frames.transpose(1, 2))
        envelope = fold((self.window ** 2).expand(1, t, -1).transpose(1, 2))[0]
        first = (self.n_fft - self.hop) // 2
        keep = slice(first, first + t * self.hop)
        return (y[:, keep] / envelope[keep].clamp(min=1e-11))[:, None]

    def context_frames(self) -> int:
        """Frames of context either side that make windowed decoding exact: the convs' reach, plus
        the frames whose windows overlap a frame's hop (FFT_HOPS / 2)."""
        return (KERNEL // 2) * (1 + self.layers) + FFT_HOPS // 2
