"""The inference path of our SEANet (seanet.py): the same layers, run without autograd on
time-major activations [B, T, C], with fewer passes over memory. Training runs the modules
themselves (`Encoder.forward`, `Decoder.forward`); `NativeCodecModel` takes this path when grad
is off (Codec encodes and decodes under inference mode).

Why it is faster than the channels-first modules: their convolutions of 16-256 channels are
small matrix products that oneDNN wraps in layout reorders (a copy of every activation into and
out of each conv), each ELU is its own pass over a tensor that no longer fits in cache, and
torch's ELU (an accurate expm1) costs more than the convolution next to it at 16-64 channels.
Here
- every activation stays time-major, the layout oneDNN's convolutions read and write as they are;
- the ELU is max(x, 2^(min(x, 0) log2 e) - 1), run a cache-sized chunk at a time (torch's exp2 is
  ~4x cheaper than its expm1), and before a padded conv it is written straight into that conv's
  padded input;
- a wide strided conv (kernel 2 x stride) is two matrix products on the padded input seen as
  [T / stride, stride x C] (no im2col copy, the bias in the first product's output);
- a transposed conv is two matrix products into its output (`transposed_conv_time_major`);
- a residual unit adds its 1x1 conv into the residual in place;
- a conv with few outputs (the decoder's last, to 1 channel) is one product with all taps side
  by side, [taps x out, in] @ x^T, then shifted rows summed (oneDNN is slow at one output channel);
- packed weights are kept until a parameter changes (`cached_pack`, over the weight-norm cache).

The sums come out in another order and the ELU's exponential is another function than the
modules', so activations differ by float rounding (~1e-6 relative, decoded audio by < 1e-6);
the shipped model's codes of the example clips are unchanged (tests/test_golden_codes.py) and
windowed codes still equal whole-input codes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rvqtool.model.conv import Conv1d, ConvTranspose1d
from rvqtool.model.encodec_seanet import (cached_pack, channels_last_kernel, conv_time_major, fill_edges,
                                          pack_transposed, transposed_conv_time_major)
from rvqtool.model.seanet import LSTM, ResidualUnit

LOG2E = 1 / math.log(2)
ELU_CHUNK = 1 << 17     # floats of one ELU chunk (512 KiB: it and its exponentials stay in L2)
NARROW_OUTPUTS = 16     # taps x out channels up to which a conv is one product and a shifted sum
WIDE_BLOCK = 512        # stride x in channels from which a strided conv is two matrix products


def run(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Apply an Encoder's or Decoder's `model` to channels-first x [B, C, T] -> [B, C', T']
    (a transposed view of a time-major result)."""
    y = x.transpose(1, 2)
    pending_elu, owned = False, False  # owned: y is ours to overwrite (not the caller's input)
    for layer in layers:
        if isinstance(layer, nn.ELU):
            if pending_elu:
                y, owned = elu(y, in_place=owned), True
            pending_elu = True
            continue
        if isinstance(layer, Conv1d):
            y = conv(layer, y, elu_first=pending_elu)
        else:
            if pending_elu:
                y, owned = elu(y, in_place=owned), True
            if isinstance(layer, ResidualUnit):
                y = residual_unit(layer, y if owned else y.clone())
            elif isinstance(layer, ConvTranspose1d):
                y = conv_transpose(layer, y)
            elif isinstance(layer, LSTM):
                out, _ = layer.lstm(y.transpose(0, 1))
                y = y + out.transpose(0, 1)
            else:
                raise TypeError(f"no time-major path for {type(layer).__name__}")
        pending_elu, owned = False, True
    if pending_elu:
        y = elu(y, in_place=owned)
    return y.transpose(1, 2)


def elu_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = ELU(x) for x, out [B, T, C] with contiguous [T, C] blocks (out may be x): max(x,
    exp(min(x, 0)) - 1), exact to float rounding (an absolute error below 1.2e-7 near 0, where
    expm1 keeps relative accuracy); in chunks, so its five passes read L2, not memory. The
    exponential is computed in `out` itself unless that is x."""
    scratch = x.new_empty(min(ELU_CHUNK, x[0].numel())) if out.data_ptr() == x.data_ptr() else None
    for i in range(x.shape[0]):
        source, target = x[i].view(-1), out[i].view(-1)
        for start in range(0, source.numel(), ELU_CHUNK):
            chunk, dest = source[start:start + ELU_CHUNK], target[start:start + ELU_CHUNK]
            power = dest if scratch is None else scratch[:chunk.numel()]
            torch.mul(chunk, LOG2E, out=power)
            power.clamp_(max=0).exp2_().sub_(1)
            torch.maximum(chunk, power, out=dest)
    return out


def elu(x: torch.Tensor, in_place: bool) -> torch.Tensor:
    """ELU(x) for time-major x, into x itself with `in_place`."""
    if not _blocks_contiguous(x):
        x, in_place = x.contiguous(), True
    return elu_into(x, x if in_place else torch.empty_like(x))


def _blocks_contiguous(x: torch.Tensor) -> bool:
    return all(x[i].is_contiguous() for i in range(x.shape[0]))


def pad_elu(x: torch.Tensor, left: int, right: int, elu_first: bool) -> torch.Tensor:
    """x [B, T, C] zero-padded along T, of ELU(x) with `elu_first` (written into the padding's
    middle directly)."""
    b, t, c = x.shape
    padded = x.new_empty(b, left + t + right, c)
    fill_edges(padded, left, right, "zeros")
    middle = padded[:, left:left + t]
    if not elu_first:
        middle.copy_(x)
    else:
        elu_into(x if _blocks_contiguous(x) else x.contiguous(), middle)
    return padded


def _kernel_pair(weight: torch.Tensor) -> torch.Tensor:
    """A strided conv's kernel [out, in, 2 x stride] as two matrices [2, (tap, in), out]: the taps
    that read frame t's block of the padded input, and those that read block t + 1."""
    cout, cin, kernel = weight.shape
    return weight.permute(2, 1, 0).reshape(2, kernel // 2 * cin, cout).contiguous()


def _taps_side_by_side(weight: torch.Tensor) -> torch.Tensor:
    """A kernel [out, in, k] as one matrix [(tap, out), in]."""
    return weight.permute(2, 0, 1).reshape(-1, weight.shape[1]).contiguous()


def _pointwise_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv's kernel [out, in, 1] as the matrix [in, out] that right-multiplies time-major rows."""
    return weight[:, :, 0].t()


def conv(layer: Conv1d, x: torch.Tensor, elu_first: bool = False) -> torch.Tensor:
    """`layer` (of ELU(x) with `elu_first`) on time-major x [B, T, in] -> [B, T / stride, out]."""
    weight, stride = layer.weight(), layer.stride
    cout, _, taps = weight.shape
    if taps == 1 and stride == 1:
        return F.linear(elu(x, in_place=False) if elu_first else x, weight[:, :, 0], layer.bias)
    padded = pad_elu(x, layer.pad_left, layer.pad_right, elu_first)
    if stride == 1 and taps * cout <= NARROW_OUTPUTS:
        return _narrow_conv(layer, padded, cached_pack(layer, weight, _taps_side_by_side), x.shape[1])
    if taps == 2 * stride and layer.dilation == 1 and stride * x.shape[2] >= WIDE_BLOCK:
        return _two_products(layer, padded, cached_pack(layer, weight, _kernel_pair), x.shape[1] // stride)
    kernel = cached_pack(layer, weight, channels_last_kernel)
    return conv_time_major(padded, kernel, layer.bias, stride, layer.dilation)


def _narrow_conv(layer: Conv1d, padded: torch.Tensor, side_by_side: torch.Tensor, t: int) -> torch.Tensor:
    """A stride-1 conv with few outputs: every tap's outputs at every input row in one product
    [(tap, out), Tp], then output row t = the sum over taps j of tap j's row at t + j x dilation."""
    b = padded.shape[0]
    cout = side_by_side.shape[0] // layer.kernel_size
    out = padded.new_empty(b, cout, t)
    for i in range(b):
        every = side_by_side @ padded[i].t()
        torch.add(every[:cout, :t], layer.bias[:, None], out=out[i])
        for j in range(1, layer.kernel_size):
            shift = j * layer.dilation
            out[i].add_(every[j * cout:(j + 1) * cout, shift:shift + t])
    return out.transpose(1, 2) if cout == 1 else out.transpose(1, 2).contiguous()


def _two_products(layer: Conv1d, padded: torch.Tensor, pair: torch.Tensor, frames: int) -> torch.Tensor:
    """A strided conv of kernel 2 x stride on padded [B, (frames + 1) x stride, in]: output frame t
    = block t @ first taps + block t + 1 @ second taps + bias, with blocks of stride rows."""
    b = padded.shape[0]
    blocks = padded.view(b, frames + 1, -1)
    out = padded.new_empty(b, frames, pair.shape[2])
    for i in range(b):
        torch.addmm(layer.bias, blocks[i, :frames], pair[0], out=out[i])
        out[i].addmm_(blocks[i, 1:], pair[1])
    return out


def conv_transpose(layer: ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """`layer` on time-major x [B, t, in] -> [B, t x stride, out] (a view, trimmed)."""
    packed = cached_pack(layer, layer.weight(), pack_transposed)
    y = transposed_conv_time_major(x, packed, layer.bias, layer.stride)
    return y[:, layer.trim_left: y.shape[1] - layer.trim_right]


def residual_unit(unit: ResidualUnit, x: torch.Tensor) -> torch.Tensor:
    """x + 1x1conv(ELU(conv(ELU(x)))) on time-major x [B, T, C], written into x (which the
    caller no longer needs): the 1x1 conv's product is added onto x in place, then its bias."""
    _, dilated, _, project = unit.block
    hidden = conv(dilated, x, elu_first=True)
    elu(hidden, in_place=True)
    back = cached_pack(project, project.weight(), _pointwise_matrix)
    for i in range(x.shape[0]):
        x[i].addmm_(hidden[i], back)
    return x.add_(project.bias)
