"""Weight-normed 1-D convolutions whose output length is exactly input_length / stride.

Weight norm is stored as `weight_g`/`weight_v` (the layout EnCodec and DAC checkpoints use).
At inference the normalised weight is computed once and cached until a parameter changes,
so encode/decode do not pay the normalisation at every call.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _WeightNormed(nn.Module):
    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def _init_weight_norm(self, weight: torch.Tensor) -> None:
        self.weight_v = nn.Parameter(weight.detach().clone())
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=(1, 2), keepdim=True).detach())
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None

    def weight(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self._normalise()
        key = (self.weight_g._version, self.weight_v._version, self.weight_g.data_ptr(), self.weight_v.data_ptr())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._normalise())
        return self._cache[1]

    def _normalise(self) -> torch.Tensor:
        norm = torch.linalg.vector_norm(self.weight_v, dim=(1, 2), keepdim=True)
        return self.weight_v * (self.weight_g / norm)


def reference_weight_norm(module: _WeightNormed) -> torch.Tensor:
    """g * v / ||v|| computed by the op torch's weight_norm uses, so that weights (and so latents
    and codes) of a foreign checkpoint come out bit for bit as in its reference package; a layer
    takes it as its `_normalise`."""
    return torch._weight_norm(module.weight_v, module.weight_g, 0)


class Conv1d(_WeightNormed):
    """Conv1d with 'same'-style padding: length n (a multiple of stride) -> n // stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, bias: bool = True):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias)
        self._init_weight_norm(conv.weight)
        self.bias = conv.bias
        self.stride, self.dilation, self.kernel_size = stride, dilation, kernel_size
        total = (kernel_size - 1) * dilation + 1 - stride
        self.pad_left = total if causal else total - total // 2
        self.pad_right = total - self.pad_left

    def context(self) -> int:
        """Input samples either side that can reach one output (a safe upper bound)."""
        return (self.kernel_size - 1) * self.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad_left, self.pad_right))
        return F.conv1d(x, self.weight(), self.bias, stride=self.stride, dilation=self.dilation)


class ConvTranspose1d(_WeightNormed):
    """ConvTranspose1d trimmed so that length n -> n * stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 causal: bool = False, bias: bool = True):
        super().__init__()
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self._init_weight_norm(conv.weight)
        self.bias = conv.bias
        self.stride, self.kernel_size = stride, kernel_size
        total = kernel_size - stride
        self.trim_right = total if causal else total // 2
        self.trim_left = total - self.trim_right

    def context(self) -> int:
        """Input elements either side that can reach one output (a safe upper bound)."""
        return math.ceil(self.kernel_size / self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose1d(x, self.weight(), self.bias, stride=self.stride)
        return y[..., self.trim_left: y.shape[-1] - self.trim_right]
