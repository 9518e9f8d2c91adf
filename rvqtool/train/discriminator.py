"""Multi-scale STFT discriminator (EnCodec's idea, our code): judges audio on its complex spectrogram.

Each scale looks at real and imaginary STFT parts as two image channels, so it sees phase as well
as magnitude, which mel/STFT-magnitude losses ignore. Several window sizes trade time for frequency
resolution. The width is small by default so that a CPU can afford it beside the codec.
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DiscriminatorConfig":
        return cls(windows=tuple(data["windows"]), filters=int(data["filters"]),
                   dilations=tuple(data["dilations"]))


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
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]), self.window, self.hop, window=self.hann,
                          normalized=True, return_complex=True)            # [B·C, freq, frames]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)      # [B·C, 2, frames, freq]
        features = []
        for conv in self.convs:
            x = self.act(conv(x))
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(STFTDiscriminator(w, config.filters, config.dilations) for w in config.windows)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """wav [B, C, T] -> per scale: logits [B·C, 1, frames, bins] and the feature maps."""
        return [scale(wav) for scale in self.scales]
