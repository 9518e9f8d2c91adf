"""SEANet encoder and decoder, the convolutional stack of EnCodec (our own implementation).

Both are pure functions of their input (no state across calls), so long audio can be cut
into windows with enough context on each side and give the same frames as one pass
(`Encoder.context_samples`, `Decoder.context_frames`). An optional LSTM gives up that property.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rvqtool.config import CodecConfig
from rvqtool.model.conv import Conv1d, ConvTranspose1d


class ResidualUnit(nn.Module):
    """ELU -> dilated conv (dim -> dim/compress) -> ELU -> 1x1 conv back, plus the identity.

    Ours, channels first. EnCodec's and DAC's checkpoints need their own units, which differ in
    more than parameters (a 1x1-conv shortcut, Snake activations and cropping, time-major layout,
    the reference's weight-norm arithmetic): `EncodecResidualUnit`, `DACResidualUnit`."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int, causal: bool):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(), Conv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal),
            nn.ELU(), Conv1d(hidden, dim, 1, causal=causal),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class LSTM(nn.Module):
    """A skip-connected LSTM over time, as in EnCodec; breaks chunk-exact streaming."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.permute(2, 0, 1))
        return x + y.permute(1, 2, 0)


def _residual_units(dim: int, cfg: CodecConfig) -> list[nn.Module]:
    return [ResidualUnit(dim, cfg.residual_kernel_size, cfg.dilation_base ** j, cfg.compress, cfg.causal)
            for j in range(cfg.n_residual_layers)]


class Encoder(nn.Module):
    """Waveform [B, C, n·hop] -> latent frames [B, dimension, n]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        nf, mult = cfg.encoder_filters, 1
        layers: list[nn.Module] = [Conv1d(cfg.channels, nf, cfg.kernel_size, causal=cfg.causal)]
        for ratio in reversed(cfg.ratios):
            layers += _residual_units(mult * nf, cfg)
            layers += [nn.ELU(), Conv1d(mult * nf, 2 * mult * nf, 2 * ratio, stride=ratio, causal=cfg.causal)]
            mult *= 2
        if cfg.lstm_layers:
            layers.append(LSTM(mult * nf, cfg.lstm_layers))
        layers += [nn.ELU(), Conv1d(mult * nf, cfg.dimension, cfg.last_kernel_size, causal=cfg.causal)]
        self.model = nn.Sequential(*layers)
        self.hop_length = cfg.hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)

    def context_samples(self) -> int | None:
        """Samples of context either side that make windowed encoding exact, rounded up to whole
        frames; None when an LSTM makes every frame depend on the whole input."""
        total, stride = 0, 1
        for m in self.model.modules():
            if isinstance(m, LSTM):
                return None
            if isinstance(m, Conv1d):
                total += m.context() * stride
                stride *= m.stride
        return math.ceil(total / self.hop_length) * self.hop_length


class Decoder(nn.Module):
    """Latent frames [B, dimension, n] -> waveform [B, C, n·hop]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        nf, mult = cfg.decoder_filters, 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [Conv1d(cfg.dimension, mult * nf, cfg.kernel_size, causal=cfg.causal)]
        if cfg.lstm_layers:
            layers.append(LSTM(mult * nf, cfg.lstm_layers))
        for ratio in cfg.ratios:
            layers += [nn.ELU(), ConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, ratio, causal=cfg.causal)]
            mult //= 2
            layers += _residual_units(mult * nf, cfg)
        layers += [nn.ELU(), Conv1d(nf, cfg.channels, cfg.last_kernel_size, causal=cfg.causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model(latent)

    def context_frames(self) -> int | None:
        """Frames of context either side that make windowed decoding exact (None with an LSTM)."""
        total, step = 0.0, 1.0
        for m in self.model.modules():
            if isinstance(m, LSTM):
                return None
            if isinstance(m, ConvTranspose1d):
                total += m.context() * step
                step /= m.stride
            elif isinstance(m, Conv1d):
                total += m.context() * step
        return math.ceil(total)
