"""DAC (Descript Audio Codec) on our modules: Snake activations, weight-normed convs with fixed
symmetric zero padding, residual units with dilations 1/3/9, a tanh output, and a factorised,
l2-normalised residual quantiser (project to a few dims, search, project back) on our kernels.

Module names follow DAC's own (`encoder.block.N...`, `quantizer.quantizers.L.in_proj`), so a
checkpoint's state dict loads as it is. Every layer pads with zeros and there is no LSTM; the
model encodes a whole signal padded with zeros to whole frames, as the reference does.

Inside the encoder, decoder and quantiser, activations are time-major, [B, T, C], for the
reasons rvqtool/model/encodec_seanet.py gives (oneDNN convolutions without layout reorders,
1x1 convs as one matrix product); sums come out in another order than the reference's, so
latents differ from its own by float rounding (~1e-6 relative).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rvqtool import kernels
from rvqtool.config import CodecConfig
from rvqtool.model.conv import Conv1d, ConvTranspose1d, reference_weight_norm
from rvqtool.model.interface import EncoderQuantizerDecoder
from rvqtool.model.encodec_seanet import (cached_pack, channels_last_kernel, conv_time_major, pack_transposed,
                                         transposed_conv_time_major)


class Snake(nn.Module):
    """x + sin(alpha x)^2 / alpha, one alpha per channel; x time-major [B, T, C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, 1, -1)
        if torch.is_grad_enabled():
            return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
        # the same expression, element for element, with one temporary instead of four
        y = torch.mul(alpha, x).sin_().pow_(2)
        return y.mul_((alpha + 1e-9).reciprocal()).add_(x)


class PaddedConv(Conv1d):
    """Weight-normed conv with `padding` zeros on both sides (as nn.Conv1d pads)."""

    _normalise = reference_weight_norm

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int = 0):
        super().__init__(cin, cout, kernel, stride, dilation)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] (time-major) -> [B, T', out]."""
        if self.kernel_size == 1 and self.padding == 0:  # a matrix product
            return F.linear(x, self.weight()[:, :, 0], self.bias)
        kernel = cached_pack(self, self.weight(), channels_last_kernel)
        if self.padding:   # oneDNN pads with zeros itself: no padded copy
            y = F.conv2d(x.transpose(1, 2).unsqueeze(2), kernel, self.bias, stride=(1, self.stride),
                         padding=(0, self.padding), dilation=(1, self.dilation))
            return y.squeeze(2).transpose(1, 2)
        return conv_time_major(x, kernel, self.bias, self.stride, self.dilation)


class PaddedConvTranspose(ConvTranspose1d):
    _normalise = reference_weight_norm

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int):
        super().__init__(cin, cout, kernel, stride)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = transposed_conv_time_major(x, cached_pack(self, self.weight(), pack_transposed), self.bias, self.stride)
        return y[:, self.padding: y.shape[1] - self.padding]


class DACResidualUnit(nn.Module):
    """DAC's: Snake -> 7-tap dilated conv -> Snake -> 1x1 conv, added to the input (cropped to
    the block's output, as DAC does), time-major."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(Snake(dim), PaddedConv(dim, dim, 7, dilation=dilation, padding=3 * dilation),
                                   Snake(dim), PaddedConv(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        crop = (x.shape[1] - y.shape[1]) // 2
        return (x[:, crop: x.shape[1] - crop] if crop > 0 else x) + y


def _units(dim: int) -> list[nn.Module]:
    return [DACResidualUnit(dim, dilation) for dilation in (1, 3, 9)]


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(*_units(dim // 2), Snake(dim // 2),
                                   PaddedConv(dim // 2, dim, 2 * stride, stride, padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(Snake(cin), PaddedConvTranspose(cin, cout, 2 * stride, stride, math.ceil(stride / 2)),
                                   *_units(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    """Waveform [B, 1, n] -> latent [B, D, n / hop] (a transposed view of time-major frames)."""

    def __init__(self, dim: int, rates: list[int], latent: int):
        super().__init__()
        layers: list[nn.Module] = [PaddedConv(1, dim, 7, padding=3)]
        for stride in rates:
            dim *= 2
            layers.append(EncoderBlock(dim, stride))
        layers += [Snake(dim), PaddedConv(dim, latent, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.transpose(1, 2)).transpose(1, 2)


class Decoder(nn.Module):
    def __init__(self, latent: int, dim: int, rates: list[int]):
        super().__init__()
        layers: list[nn.Module] = [PaddedConv(latent, dim, 7, padding=3)]
        for i, stride in enumerate(rates):
            layers.append(DecoderBlock(dim // 2 ** i, dim // 2 ** (i + 1), stride))
        out = dim // 2 ** len(rates)
        layers += [Snake(out), PaddedConv(out, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """latent [B, D, T] -> waveform [B, 1, T x hop]."""
        return self.model(x.transpose(1, 2)).transpose(1, 2)


class FactorisedLevel(nn.Module):
    """One level: project to `dim` dims, nearest l2-normalised code, project the raw code back."""

    def __init__(self, latent: int, codebook_size: int, dim: int):
        super().__init__()
        self.in_proj = PaddedConv(latent, dim, 1)
        self.out_proj = PaddedConv(dim, latent, 1)
        self.codebook = nn.Embedding(codebook_size, dim)

    def encode(self, residual: torch.Tensor) -> torch.Tensor:
        """residual [B, T, latent] (time-major) -> codes [B, T]."""
        b, t, _ = residual.shape
        projected = F.normalize(self.in_proj(residual).reshape(b * t, -1))
        return kernels.nearest(projected, F.normalize(self.codebook.weight)).view(b, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] -> [B, T, latent] (time-major)."""
        return self.out_proj(self.codebook.weight[codes])


class FactorisedRVQ(nn.Module):
    def __init__(self, latent: int, n_quantizers: int, codebook_size: int, dim: int):
        super().__init__()
        self.quantizers = nn.ModuleList(FactorisedLevel(latent, codebook_size, dim) for _ in range(n_quantizers))

    def encode(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        """latent [B, D, T] -> codes [B, n_q, T]."""
        residual, codes = latent.transpose(1, 2), []
        for level in self.quantizers[:n_q]:
            codes.append(level.encode(residual))
            residual = residual - level.decode(codes[-1])
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q', T] -> latent [B, D, T]."""
        return sum(self.quantizers[i].decode(codes[:, i]) for i in range(codes.shape[1])).transpose(1, 2)


class DACCodecModel(EncoderQuantizerDecoder):
    whole_input = True  # Codec: one pass over the whole signal, as the reference's encode

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        extra = config.extra
        self.encoder = Encoder(config.encoder_filters, list(extra["encoder_rates"]), config.dimension)
        self.quantizer = FactorisedRVQ(config.dimension, config.n_quantizers, config.codebook_size,
                                       int(extra["codebook_dim"]))
        self.decoder = Decoder(config.dimension, config.decoder_filters, list(config.ratios))

    # ---- rvqtool.model.interface.CodecModel (quantize, dequantize, decode_latents: the parts') ----
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, n] -> latents [B, D, ceil(n / hop)] (zeros pad the last frame, as DAC pads)."""
        return self.encoder(F.pad(wav, (0, -wav.shape[-1] % self.config.hop_length)))

    def encoder_context(self) -> None:
        return None   # whole input: never windowed

    def decoder_context(self) -> None:
        return None
