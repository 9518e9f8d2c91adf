"""SEANet as the EnCodec checkpoints were trained: our weight-normed convs, plus what those
checkpoints need and our default model does not — reflect padding with the extra right-hand
padding that lets any length n give ceil(n / stride) frames, 1x1-conv shortcuts in the
residual units, a two-layer LSTM, and (48 kHz) plain convs followed by a time group norm.

Architecture options come from `CodecConfig.extra`: pad_mode ("reflect" | "zero"), norm
("weight_norm" | "time_group_norm"), true_skip (bool). Layer order and indices follow EnCodec's
`nn.Sequential`, so a checkpoint maps onto it by renaming suffixes (rvqtool/pretrained/encodec.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvqtool.config import CodecConfig
from rvqtool.model.conv import Conv1d, ConvTranspose1d
from rvqtool.model.seanet import LSTM


def pad_1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflects inputs shorter than the padding (zeros first, as EnCodec does)."""
    if mode != "reflect":
        return F.pad(x, (left, right))
    length, most = x.shape[-1], max(left, right)
    if length > most:
        return F.pad(x, (left, right), mode="reflect")
    extra = most - length + 1
    padded = F.pad(F.pad(x, (0, extra)), (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


class _PlainWeight:
    """Swap weight norm for a plain kernel (time-group-norm checkpoints store `weight` as is)."""

    def _use_plain_weight(self) -> None:
        weight = self._normalise()
        del self.weight_g, self.weight_v
        self.kernel = nn.Parameter(weight.detach().clone())

    def weight(self) -> torch.Tensor:
        return self.kernel


def _reference_weight_norm(module) -> torch.Tensor:
    """g * v / ||v|| computed by the op torch's weight_norm uses, so that weights (and so latents
    and codes) come out bit for bit as in the reference package."""
    return torch._weight_norm(module.weight_v, module.weight_g, 0)


class PaddedConv1d(Conv1d):
    """Conv1d padded as EnCodec pads: any length n -> ceil(n / stride), edges reflected."""

    _normalise = _reference_weight_norm

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, pad_mode: str = "reflect"):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, causal)
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 1 and self.stride == 1 and x.shape[0] == 1:  # a matrix product
            return torch.addmm(self.bias[:, None], self.weight()[:, :, 0], x[0])[None]
        extra = -x.shape[-1] % self.stride
        x = pad_1d(x, self.pad_left, self.pad_right + extra, self.pad_mode)
        return F.conv1d(x, self.weight(), self.bias, stride=self.stride, dilation=self.dilation)


class GroupNormConv1d(_PlainWeight, PaddedConv1d):
    """Plain conv then GroupNorm(1, channels) over the whole time axis (EnCodec 48 kHz)."""

    def __init__(self, in_channels: int, out_channels: int, *args, **kwargs):
        super().__init__(in_channels, out_channels, *args, **kwargs)
        self._use_plain_weight()
        self.norm = nn.GroupNorm(1, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


def transposed_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """conv_transpose1d for kernel = 2 x stride as one matrix product and one shifted add: each
    input frame writes two blocks of `stride` samples, the second overlapping the next frame's
    first. Several times faster than torch's CPU path; equal up to float rounding (decoding only)."""
    if weight.shape[-1] != 2 * stride:
        return F.conv_transpose1d(x, weight, bias, stride=stride)
    b, cin, t = x.shape
    cout = weight.shape[1]
    blocks = torch.matmul(weight.reshape(cin, cout * 2 * stride).t(), x).view(b, cout, 2, stride, t)
    out = F.pad(blocks[:, :, 0], (0, 1)) + F.pad(blocks[:, :, 1], (1, 0))      # [b, cout, stride, t + 1]
    return (out + bias.view(1, cout, 1, 1)).transpose(2, 3).reshape(b, cout, (t + 1) * stride)


class WeightNormConvTranspose1d(ConvTranspose1d):
    """Our transposed conv, weight norm computed as the reference computes it."""

    _normalise = _reference_weight_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = transposed_conv(x, self.weight(), self.bias, self.stride)
        return y[..., self.trim_left: y.shape[-1] - self.trim_right]


class GroupNormConvTranspose1d(_PlainWeight, ConvTranspose1d):
    """Plain transposed conv, GroupNorm on the untrimmed output, then the trim."""

    def __init__(self, in_channels: int, out_channels: int, *args, **kwargs):
        super().__init__(in_channels, out_channels, *args, **kwargs)
        self._use_plain_weight()
        self.norm = nn.GroupNorm(1, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(transposed_conv(x, self.weight(), self.bias, self.stride))
        return y[..., self.trim_left: y.shape[-1] - self.trim_right]


class _Layers:
    """The conv factories one config asks for."""

    def __init__(self, cfg: CodecConfig):
        self.causal, self.pad_mode = cfg.causal, cfg.extra.get("pad_mode", "reflect")
        self.group_norm = cfg.extra.get("norm", "weight_norm") == "time_group_norm"
        self.true_skip = bool(cfg.extra.get("true_skip", False))

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Module:
        kind = GroupNormConv1d if self.group_norm else PaddedConv1d
        return kind(cin, cout, kernel, stride, dilation, causal=self.causal, pad_mode=self.pad_mode)

    def conv_transpose(self, cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
        kind = GroupNormConvTranspose1d if self.group_norm else WeightNormConvTranspose1d
        return kind(cin, cout, kernel, stride, causal=self.causal)


class ResidualUnit(nn.Module):
    """ELU -> dilated conv -> ELU -> 1x1 conv, added to a 1x1-conv shortcut (or the identity)."""

    def __init__(self, dim: int, dilation: int, cfg: CodecConfig, layers: _Layers):
        super().__init__()
        hidden = dim // cfg.compress
        # in place where the input is not needed again (saves an allocation; same numbers)
        self.block = nn.Sequential(nn.ELU(), layers.conv(dim, hidden, cfg.residual_kernel_size, dilation=dilation),
                                   nn.ELU(inplace=True), layers.conv(hidden, dim, 1))
        self.shortcut = nn.Identity() if layers.true_skip else layers.conv(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


def _units(dim: int, cfg: CodecConfig, layers: _Layers) -> list[nn.Module]:
    return [ResidualUnit(dim, cfg.dilation_base ** j, cfg, layers) for j in range(cfg.n_residual_layers)]


class EncodecEncoder(nn.Module):
    """Waveform [B, C, n] -> latent [B, dimension, ceil(n / hop)]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        layers, nf, mult = _Layers(cfg), cfg.encoder_filters, 1
        model: list[nn.Module] = [layers.conv(cfg.channels, nf, cfg.kernel_size)]
        for ratio in reversed(cfg.ratios):
            model += _units(mult * nf, cfg, layers)
            model += [nn.ELU(inplace=True), layers.conv(mult * nf, 2 * mult * nf, 2 * ratio, stride=ratio)]
            mult *= 2
        if cfg.lstm_layers:
            model.append(LSTM(mult * nf, cfg.lstm_layers))
        model += [nn.ELU(inplace=True), layers.conv(mult * nf, cfg.dimension, cfg.last_kernel_size)]
        self.model = nn.Sequential(*model)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)


class EncodecDecoder(nn.Module):
    """Latent [B, dimension, T] -> waveform [B, C, T * hop]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        layers, nf, mult = _Layers(cfg), cfg.decoder_filters, 2 ** len(cfg.ratios)
        model: list[nn.Module] = [layers.conv(cfg.dimension, mult * nf, cfg.kernel_size)]
        if cfg.lstm_layers:
            model.append(LSTM(mult * nf, cfg.lstm_layers))
        for ratio in cfg.ratios:
            model += [nn.ELU(inplace=True), layers.conv_transpose(mult * nf, mult * nf // 2, 2 * ratio, ratio)]
            mult //= 2
            model += _units(mult * nf, cfg, layers)
        model += [nn.ELU(inplace=True), layers.conv(nf, cfg.channels, cfg.last_kernel_size)]
        self.model = nn.Sequential(*model)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model(latent)
