"""The discriminators (EnCodec's and HiFi-GAN's ideas, our code).

Multi-scale STFT: each scale looks at real and imaginary STFT parts as two image channels, so it
sees phase as well as magnitude, which mel/STFT-magnitude losses ignore; several window sizes trade
time for frequency resolution. Multi-period (optional, `periods`): each sub-discriminator folds the
waveform into [T / p, p] and convolves along time only, so it judges samples p apart — the
periodic structure of voiced speech whose harmonics spectral losses let smear into noise.
The widths are small by default so that a CPU can afford them beside the codec.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

# (logits, features) for each scale; features are the activations the feature-matching loss compares
DiscriminatorOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]


@dataclass(frozen=True)
class DiscriminatorConfig:
    windows: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    filters: int = 16
    dilations: tuple[int, ...] = (1, 2, 4)
    periods: tuple[int, ...] = ()   # multi-period sub-discriminators (HiFi-GAN: 2, 3, 5, 7, 11); none by default

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DiscriminatorConfig":
        """Also a state written before periods existed (STFT scales only)."""
        return cls(windows=tuple(data["windows"]), filters=int(data["filters"]),
                   dilations=tuple(data["dilations"]), periods=tuple(data.get("periods", ())))


class STFTDiscriminator(nn.Module):
    """One scale: 2-D convs over [frames, frequency], striding down in frequency and dilating in time."""

    def __init__(self, window: int, filters: int, dilations: tuple[int, ...]):
        super().__init__()
        self.window, self.hop = window, window // 4
        self.register_buffer("hann", torch.hann_window(window), persistent=False)
        convs = [nn.Conv2d(2, filters, (3, 9), padding=(1, 4))]
        for d in dilations:
            convs.append(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
        convs.append(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.out = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]).float(), self.window, self.hop, window=self.hann,
                          normalized=True, return_complex=True)            # [B·C, freq, frames]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)      # [B·C, 2, frames, freq]
        features = []
        for conv in self.convs:
            x = self.act(conv(x))
            features.append(x)
        return self.out(x), features


class PeriodDiscriminator(nn.Module):
    """One period p: [B·C, 1, T/p, p] through 2-D convs striding along time, never across the period."""

    def __init__(self, period: int, filters: int):
        super().__init__()
        self.period = period
        widths = (1, filters, 2 * filters, 4 * filters, 4 * filters)
        convs = [nn.Conv2d(a, b, (5, 1), stride=(3, 1), padding=(2, 0)) for a, b in zip(widths, widths[1:])]
        convs.append(nn.Conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))
        self.act = nn.LeakyReLU(0.1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = wav.reshape(-1, 1, wav.shape[-1])
        x = nn.functional.pad(x, (0, -x.shape[-1] % self.period), mode="reflect")
        x = x.reshape(x.shape[0], 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = self.act(conv(x))
            features.append(x)
        return self.out(x), features


class Discriminator(nn.Module):
    """The STFT scales, then the periods (if any): one list of judges for the losses."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(STFTDiscriminator(w, config.filters, config.dilations) for w in config.windows)
        self.periods = nn.ModuleList(PeriodDiscriminator(p, config.filters) for p in config.periods)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """wav [B, C, T] -> per judge: logits and the feature maps."""
        return [scale(wav) for scale in self.scales] + [period(wav) for period in self.periods]
