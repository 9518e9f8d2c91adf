"""SEANet as the EnCodec checkpoints were trained: our weight-normed convs, plus what those
checkpoints need and our default model does not — reflect padding with the extra right-hand
padding that lets any length n give ceil(n / stride) frames, 1x1-conv shortcuts in the
residual units, a two-layer LSTM, and (48 kHz) plain convs followed by a time group norm.

Architecture options come from `CodecConfig.extra`: pad_mode ("reflect" | "zero"), norm
("weight_norm" | "time_group_norm"), true_skip (bool). Layer order and indices follow EnCodec's
`nn.Sequential`, so a checkpoint maps onto it by renaming suffixes (rvqtool/pretrained/encodec.py).

Inside the stacks activations are time-major, [B, T, C] (channels last): oneDNN's convolutions
then read and write them as they are (channel-first tensors are reordered to a blocked layout
and back around every convolution, which cost the reference ~15 % of its time), 1x1 convs are
one matrix product, and the LSTM and the quantizer take the tensor without a transpose. The
sums come out in another order than the reference's, so latents differ from its latents by
float rounding (~1e-6 relative): a rare near-tie code may flip (tests/test_pretrained_*.py).
At inference the residual units finish in steps of rows that stay in cache, written over their
input or into the next conv's padded buffer, and padded conv inputs are per-thread scratch
reused from call to call (`_Scratch`); both give the plain pass's numbers bit for bit
(tests/test_encodec_seanet.py).
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from rvqtool.config import CodecConfig
from rvqtool.model.conv import Conv1d, ConvTranspose1d, reference_weight_norm
from rvqtool.model.seanet import LSTM


class _Scratch(threading.local):
    """Buffers reused from call to call (one set per thread) for a conv's padded input, which is
    dead once the conv has run: a fresh activation-sized tensor costs its page faults (~25 ms
    per 60 MB on the 2-core machine, 10 % of EnCodec's encode), a reused one none. Two slots:
    "pad" for `pad_time`, "input" for `PaddedConv1d.input_buffer`, which a residual unit writes
    while its own conv pads into "pad". Kept between calls up to `_KEEP_BYTES` each (10 s of
    EnCodec or Mimi at 24 kHz); larger ones are made for the call and freed with it."""

    def __init__(self):
        self.slots: dict[tuple, torch.Tensor] = {}

    def take(self, slot: str, like: torch.Tensor, *shape: int) -> torch.Tensor:
        """An uninitialised tensor of `shape` like `like`, valid until the next take of `slot` (on
        this thread). Fresh where autograd might keep it for a backward pass."""
        if like.requires_grad or torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return like.new_empty(shape)
        numel = 1
        for size in shape:
            numel *= size
        key = (slot, like.dtype, like.device, torch.is_inference_mode_enabled())
        buffer = self.slots.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = like.new_empty(numel)
            if numel * buffer.element_size() <= _KEEP_BYTES:
                self.slots[key] = buffer
        return buffer[:numel].view(shape)


_KEEP_BYTES = 64 << 20
_SCRATCH = _Scratch()


def pad_time(x: torch.Tensor, left: int, right: int, mode: str, elu: bool = False) -> torch.Tensor:
    """Pad time-major x [B, T, C] along T: zeros, or edges reflected (inputs shorter than the
    padding get zeros first, as EnCodec does). `elu`: pad ELU(x), the ELU writing straight
    into the padded tensor (one pass over the activations instead of two). The result is
    scratch (`_Scratch`): valid until the next `pad_time` on this thread."""
    most = max(left, right)
    extra = max(0, most - x.shape[1] + 1) if mode == "reflect" else 0
    if extra:
        x = F.pad(x, (0, 0, 0, extra))
    n = x.shape[1]
    padded = _SCRATCH.take("pad", x, x.shape[0], left + n + right, x.shape[2])   # (torch.cat is ~4x slower here)
    middle = padded[:, left:left + n]
    if not elu:
        middle.copy_(x)
    elif x.requires_grad:  # out= ops do not record autograd
        middle.copy_(F.elu(x))
    else:
        torch.ops.aten.elu.out(x, out=middle)
    fill_edges(padded, left, right, mode)
    return padded[:, : padded.shape[1] - extra]


def fill_edges(padded: torch.Tensor, left: int, right: int, mode: str) -> None:
    """The padding of padded [..., left + n + right, C] (time on the second-last axis) from its
    middle n rows: zeros, or the rows next to each edge mirrored (n > max(left, right))."""
    n = padded.shape[-2] - left - right
    if mode == "reflect":
        padded[..., :left, :] = padded[..., left + 1:2 * left + 1, :].flip(-2)
        padded[..., left + n:, :] = padded[..., left + n - right - 1:left + n - 1, :].flip(-2)
    else:
        padded[..., :left, :] = 0
        padded[..., left + n:, :] = 0


def cached_pack(module: nn.Module, weight: torch.Tensor, pack) -> torch.Tensor:
    """`pack(weight)`, kept while `weight` is the same tensor, unchanged, packed by the same `pack`
    (weights are fixed at inference, so the layout change is paid once). The normalised weight is
    cached upstream and replaced when a parameter changes; inference tensors carry no version counter."""
    version = -1 if weight.is_inference() else weight._version
    cached = getattr(module, "_packed_cache", None)
    if cached is None or cached[0] is not weight or cached[1] != version or cached[2] is not pack:
        cached = module._packed_cache = (weight, version, pack, pack(weight))
    return cached[3]


def conv_time_major(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    stride: int = 1, dilation: int = 1) -> torch.Tensor:
    """conv1d on x [B, T, C] with a channels-last 4-D kernel [out, in, 1, k] -> [B, T', out]."""
    y = F.conv2d(x.transpose(1, 2).unsqueeze(2), weight, bias, stride=(1, stride), dilation=(1, dilation))
    return y.squeeze(2).transpose(1, 2)


def channels_last_kernel(weight: torch.Tensor) -> torch.Tensor:
    return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class PlainWeight:
    """Swap weight norm for a plain kernel (time-group-norm checkpoints store `weight` as is)."""

    def _use_plain_weight(self) -> None:
        weight = self._normalise()
        del self.weight_g, self.weight_v
        self.kernel = nn.Parameter(weight.detach().clone())

    def weight(self) -> torch.Tensor:
        return self.kernel


class PaddedConv1d(Conv1d):
    """Conv1d padded as EnCodec pads: any length n -> ceil(n / stride), edges reflected."""

    _normalise = reference_weight_norm

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, pad_mode: str = "reflect"):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, causal)
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor, elu: bool = False) -> torch.Tensor:
        """x [B, T, C] (time-major) -> [B, ceil(T / stride), out]; `elu`: of ELU(x)."""
        if self.kernel_size == 1 and self.stride == 1:  # a matrix product
            return F.linear(F.elu(x) if elu else x, self.weight()[:, :, 0], self.bias)
        extra = -x.shape[1] % self.stride
        x = pad_time(x, self.pad_left, self.pad_right + extra, self.pad_mode, elu)
        kernel = cached_pack(self, self.weight(), channels_last_kernel)
        return conv_time_major(x, kernel, self.bias, self.stride, self.dilation)

    def input_buffer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(buffer, rows): where a layer before this conv can write its output (already through
        the ELU between them), rows [B, T, C] being the middle of the padded buffer, so that no
        padded copy is made; `run_buffer(buffer, T)` then runs the conv (the buffer is scratch,
        valid until the next `input_buffer` on this thread). None where the padding needs more
        than that (a 1x1 conv, or reflecting an input shorter than the padding)."""
        left, right = self.pad_left, self.pad_right + -x.shape[1] % self.stride
        if self.kernel_size == 1 and self.stride == 1 or self.pad_mode == "reflect" and x.shape[1] <= max(left, right):
            return None
        buffer = _SCRATCH.take("input", x, x.shape[0], left + x.shape[1] + right, x.shape[2])
        return buffer, buffer[:, left:left + x.shape[1]]

    def run_buffer(self, buffer: torch.Tensor, t: int) -> torch.Tensor:
        """This conv on an `input_buffer` for T = t whose rows are written: edges filled, then the conv."""
        fill_edges(buffer, self.pad_left, buffer.shape[1] - self.pad_left - t, self.pad_mode)
        kernel = cached_pack(self, self.weight(), channels_last_kernel)
        return conv_time_major(buffer, kernel, self.bias, self.stride, self.dilation)


class GroupNormConv1d(PlainWeight, PaddedConv1d):
    """Plain conv then GroupNorm(1, channels) over the whole time axis (EnCodec 48 kHz)."""

    def __init__(self, in_channels: int, out_channels: int, *args, **kwargs):
        super().__init__(in_channels, out_channels, *args, **kwargs)
        self._use_plain_weight()
        self.norm = nn.GroupNorm(1, out_channels)

    def forward(self, x: torch.Tensor, elu: bool = False) -> torch.Tensor:
        return group_norm_time_major(self.norm, super().forward(x, elu))

    def run_buffer(self, buffer: torch.Tensor, t: int) -> torch.Tensor:
        return group_norm_time_major(self.norm, super().run_buffer(buffer, t))


def group_norm_time_major(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm over x [B, T, C] (time-major), through a channels-last 4-D view."""
    return norm(x.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)


def pack_transposed(weight: torch.Tensor) -> torch.Tensor:
    """A transposed-conv kernel [in, out, 2 x stride] as two matrices [2, in, (tap, out)]: the
    first and the second `stride` taps."""
    cin, cout, kernel = weight.shape
    return weight.view(cin, cout, 2, kernel // 2).permute(2, 0, 3, 1).reshape(2, cin, kernel // 2 * cout)


def transposed_conv_time_major(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """conv_transpose1d for kernel = 2 x stride on time-major x [B, t, in] -> [B, (t + 1) x
    stride, out], `packed` from `pack_transposed`. Frame j writes output rows j x stride ... with
    its first taps and the next `stride` rows with its second: one matrix product written into
    the output, a second added onto it one frame later (no intermediate, nothing transposed)."""
    b, t, _ = x.shape
    width = packed.shape[2]
    row_bias = bias.repeat(stride)
    out = x.new_empty(b, t + 1, width)
    for i in range(b):
        torch.addmm(row_bias, x[i], packed[0], out=out[i, :t])
        out[i, t] = row_bias
        out[i, 1:].addmm_(x[i], packed[1])
    return out.view(b, (t + 1) * stride, bias.shape[0])


class WeightNormConvTranspose1d(ConvTranspose1d):
    """Our transposed conv (kernel = 2 x stride), weight norm computed as the reference does."""

    _normalise = reference_weight_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, t, in] (time-major) -> [B, t x stride, out]."""
        packed = cached_pack(self, self.weight(), pack_transposed)
        y = transposed_conv_time_major(x, packed, self.bias, self.stride)
        return y[:, self.trim_left: y.shape[1] - self.trim_right]


class GroupNormConvTranspose1d(PlainWeight, ConvTranspose1d):
    """Plain transposed conv, GroupNorm on the untrimmed output, then the trim."""

    def __init__(self, in_channels: int, out_channels: int, *args, **kwargs):
        super().__init__(in_channels, out_channels, *args, **kwargs)
        self._use_plain_weight()
        self.norm = nn.GroupNorm(1, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = cached_pack(self, self.weight(), pack_transposed)
        y = group_norm_time_major(self.norm, transposed_conv_time_major(x, packed, self.bias, self.stride))
        return y[:, self.trim_left: y.shape[1] - self.trim_right]


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


class TimeMajorLSTM(LSTM):
    """The skip-connected LSTM on time-major x [B, T, C] (for B = 1 its [T, B, C] is a view)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.transpose(0, 1))
        return x + y.transpose(0, 1)


def run_stack(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Apply `layers` in order; an ELU right before a padded conv is done by that conv's padding
    (`pad_time(elu=True)`). A residual unit on a tensor this made (not the caller's) writes over
    it, or, when an ELU and a conv follow, writes their input straight into the conv's padded
    buffer (`EncodecResidualUnit.forward_`, `PaddedConv1d.input_buffer`)."""
    layers, pending, owned = list(layers), None, False
    i = 0
    while i < len(layers):
        layer = layers[i]
        i += 1
        if pending is not None and isinstance(layer, PaddedConv1d):
            x, pending, owned = layer(x, elu=True), None, True
            continue
        if pending is not None:
            x, pending = pending(x), None
        if isinstance(layer, nn.ELU):
            pending = layer
        elif owned and isinstance(layer, EncodecResidualUnit) and not x.requires_grad:
            after = layers[i:i + 2]
            target = (after[1].input_buffer(x) if len(after) == 2 and isinstance(after[0], nn.ELU)
                      and isinstance(after[1], PaddedConv1d) else None)
            if target is None:
                x = layer.forward_(x)
            else:
                x = after[1].run_buffer(target[0], layer.forward_(x, target[1], elu=True).shape[1])
                i += 2
        else:
            x, owned = layer(x), True
    return x if pending is None else pending(x)


class EncodecResidualUnit(nn.Module):
    """EnCodec's: ELU -> dilated conv -> ELU -> 1x1 conv, added to a 1x1-conv shortcut (or the
    identity), time-major, on the reference's padding and weight norm.

    With a plain 1x1 shortcut both 1x1 convs go into one output: the shortcut's product (with
    both biases), then the block's product added in place by the same matrix multiply.

    In a stack at inference the unit runs `forward_`: after the dilated conv, `_ROWS` rows at a
    time, its output written over its input or into the next conv's padded buffer, so the ELU,
    the products and the residual add of a step stay in cache and the output needs no fresh
    activation-sized tensor (a fresh one costs its page faults: ~25 ms per 60 MB here). Each
    output row is the whole pass's sum: MKL computes a row of a product the same way whatever
    the number of rows (tests/test_encodec_seanet.py checks the unit bit for bit)."""

    def __init__(self, dim: int, dilation: int, cfg: CodecConfig, layers: _Layers):
        super().__init__()
        self.hidden = hidden = dim // cfg.compress
        # in place where the input is not needed again (saves an allocation)
        self.block = nn.Sequential(nn.ELU(), layers.conv(dim, hidden, cfg.residual_kernel_size, dilation=dilation),
                                   nn.ELU(inplace=True), layers.conv(hidden, dim, 1))
        self.shortcut = nn.Identity() if layers.true_skip else layers.conv(dim, dim, 1)
        self.fused = type(self.shortcut) is PaddedConv1d and type(self.block[3]) is PaddedConv1d
        # a group norm needs the whole time axis at once
        self.steppable = (self.fused or isinstance(self.shortcut, nn.Identity)) and not any(
            isinstance(m, GroupNormConv1d) for m in self.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, conv, elu, project = self.block
        h = elu(conv(x, elu=True))
        if not self.fused:   # added in place: one activation-sized allocation fewer
            return project(h).add_(self.shortcut(x))
        out = F.linear(x, self.shortcut.weight()[:, :, 0], self.shortcut.bias + project.bias)
        flat = out.view(-1, out.shape[-1])
        return flat.addmm_(h.reshape(-1, h.shape[-1]), project.weight()[:, :, 0].t()).view(out.shape)

    def forward_(self, x: torch.Tensor, out: torch.Tensor | None = None, elu: bool = False) -> torch.Tensor:
        """`forward(x)` (`elu`: ELU of it) written into out [B, T, C] (x itself by default, which
        the caller then no longer needs); returns out. The dilated conv runs on the whole input
        (oneDNN's per-call cost makes it slower in pieces), the rest `_ROWS` rows at a time."""
        out = x if out is None else out
        _, conv, _, project = self.block
        if not self.steppable or x.requires_grad or not _steps_agree(*x.shape[:2], self.hidden):
            y = self.forward(x)
            return torch.ops.aten.elu.out(y, out=out) if elu else out.copy_(y)
        h = conv(x, elu=True)
        weight = project.weight()[:, :, 0].t()
        shortcut = self.shortcut.weight()[:, :, 0].t() if self.fused else None
        bias = self.shortcut.bias + project.bias if self.fused else project.bias
        t, step_rows = x.shape[1], _ROWS * torch.get_num_threads()   # each thread's share in its cache
        buffer = x.new_empty(min(t, step_rows), x.shape[2])
        for i in range(x.shape[0]):
            for lo in range(0, t, step_rows):
                hi = min(t, lo + step_rows)
                step, hidden, result, dest = x[i, lo:hi], F.elu_(h[i, lo:hi]), buffer[:hi - lo], out[i, lo:hi]
                if self.fused:
                    torch.addmm(bias, step, shortcut, out=result).addmm_(hidden, weight)
                    torch.ops.aten.elu.out(result, out=dest) if elu else dest.copy_(result)
                else:
                    torch.add(step, torch.addmm(bias, hidden, weight, out=result), out=dest)
                    if elu:
                        F.elu_(dest)
        return out


_ROWS = 2048   # rows per step and thread of a residual unit at inference (32-128 channels: 0.25-1 MiB a tensor)


def _steps_agree(batch: int, rows: int, width: int) -> bool:
    """Whether an element-wise op (ELU) on [batch, rows, width] in steps of `_ROWS` rows computes
    every element as one op over the whole tensor does: ATen runs the last elements of a call
    that are fewer than two vectors (32 floats with AVX-512) through scalar code that rounds
    differently, so no step but the tensor's last may leave such a tail (with batch > 1 each
    item's last step ends mid-tensor). And two steps or more, else nothing is gained."""
    return rows >= 2 * _ROWS and (batch == 1 or rows * width % 64 == 0)


def _units(dim: int, cfg: CodecConfig, layers: _Layers) -> list[nn.Module]:
    return [EncodecResidualUnit(dim, cfg.dilation_base ** j, cfg, layers) for j in range(cfg.n_residual_layers)]


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
            model.append(TimeMajorLSTM(mult * nf, cfg.lstm_layers))
        model += [nn.ELU(inplace=True), layers.conv(mult * nf, cfg.dimension, cfg.last_kernel_size)]
        self.model = nn.Sequential(*model)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return run_stack(self.model, wav.transpose(1, 2)).transpose(1, 2)


class EncodecDecoder(nn.Module):
    """Latent [B, dimension, T] -> waveform [B, C, T * hop]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        layers, nf, mult = _Layers(cfg), cfg.decoder_filters, 2 ** len(cfg.ratios)
        model: list[nn.Module] = [layers.conv(cfg.dimension, mult * nf, cfg.kernel_size)]
        if cfg.lstm_layers:
            model.append(TimeMajorLSTM(mult * nf, cfg.lstm_layers))
        for ratio in cfg.ratios:
            model += [nn.ELU(inplace=True), layers.conv_transpose(mult * nf, mult * nf // 2, 2 * ratio, ratio)]
            mult //= 2
            model += _units(mult * nf, cfg, layers)
        model += [nn.ELU(inplace=True), layers.conv(nf, cfg.channels, cfg.last_kernel_size)]
        self.model = nn.Sequential(*model)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return run_stack(self.model, latent.transpose(1, 2)).transpose(1, 2)
