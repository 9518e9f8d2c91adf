"""Mimi (Kyutai's codec: Moshi, Sesame CSM) on our modules.

24 kHz mono -> causal SEANet (plain convs, zero left padding, identity shortcuts, no LSTM) at
25 Hz -> causal transformer -> a stride-2 conv (left edge replicated) to 12.5 Hz -> split RVQ:
level 0 quantises one 1x1 projection of the latent ("semantic"), levels 1... the residuals of
another ("acoustic"); each level's code vector goes back through its half's output projection
and the halves add up. Decoding mirrors it: depthwise transposed conv to 25 Hz, transformer,
SEANet decoder.

`config.ratios` is the decoder's order of strides, the first being that 25 -> 12.5 Hz resampling
(2), the rest SEANet's (8, 6, 5, 4): hop 2 x 960 = 1920 samples, 12.5 frames/s.

Everything is causal: a frame depends on the samples up to its end and, through the convs and
each transformer layer's window, on a bounded stretch before it (`encoder_context`). Long inputs
run as streams (`encoder_stream`, `decoder_stream`): fed in pieces of whole frames, each layer
keeping only what its next output needs of the past, so memory stays flat. Activations
are time-major, [B, T, C], as in rvqtool/model/encodec_seanet.py (whose convs and residual units
this reuses); sums come out in another order than the reference's, so latents differ from its
own by float rounding and a rare near-tie code may differ (tests/test_mimi.py says how rarely).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rvqtool.config import CodecConfig
from rvqtool.model.encodec_seanet import (EncodecResidualUnit, PaddedConv1d, WeightNormConvTranspose1d, PlainWeight,
                                         cached_pack, channels_last_kernel, conv_time_major, run_stack)
from rvqtool.model.mimi_transformer import KeyValueCache, MimiTransformer
from rvqtool.model.quantizer import ResidualVQ


class CausalConv1d(PlainWeight, PaddedConv1d):
    """Plain (not weight-normed) conv, zeros on the left only: n frames -> n / stride."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel, stride, dilation, causal=True, pad_mode="zero")
        self._use_plain_weight()
        if not bias:
            self.bias = None

    def _as_products(self, x: torch.Tensor) -> bool:
        return self.stride > 1 and self.kernel_size == 2 * self.stride and x.shape[1] % self.stride == 0

    def input_buffer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A downsampling conv needs no padded copy: the layer before it writes over x itself."""
        return (x, x) if self._as_products(x) else super().input_buffer(x)

    def run_buffer(self, buffer: torch.Tensor, t: int) -> torch.Tensor:
        return self(buffer) if self._as_products(buffer) else super().run_buffer(buffer, t)

    def forward(self, x: torch.Tensor, elu: bool = False) -> torch.Tensor:
        """x [B, T, C] (time-major, T a multiple of the stride) -> [B, T / stride, out]; `elu`: of
        ELU(x), which a downsampling conv (kernel 2 x stride) computes in place over x, as the
        stack's ELU before it is in place."""
        if not self._as_products(x):
            return super().forward(x, elu)
        # kernel 2 x stride: output frame j reads input frames j - 1 and j of `stride` samples
        # each, so the conv is two matrix products on x viewed as [B, T / stride, stride x C]
        # (no padded copy, no layout change); frame -1 is the causal zero padding
        b, t, c = x.shape
        packed = cached_pack(self, self.weight(), _pack_strided)
        if x.requires_grad:   # out= products do not record autograd
            frames = (F.elu_(x) if elu else x).reshape(b, t // self.stride, self.stride * c)
            out = torch.matmul(frames, packed[1])
            if self.bias is not None:
                out += self.bias
            out[:, 1:] += torch.matmul(frames[:, :-1], packed[0])
            return out
        # _ROWS frames at a time, ELU in place (the stack's ELU before this conv is in place), both
        # products into small buffers that stay in cache: out[j] = (x_j P1 + bias) + x_{j-1} P0,
        # the sums of one product over all frames (MKL's rows do not depend on how many there are)
        x = x if x.is_contiguous() else x.contiguous()
        if elu and b > 1 and t * c % 64:   # a step's ELU would leave a scalar tail mid-tensor (see _steps_agree)
            x, elu = F.elu_(x), False
        frames = x.view(b, t // self.stride, self.stride * c)
        n, width, step_rows = frames.shape[1], packed.shape[2], _ROWS * torch.get_num_threads()
        out = x.new_empty(b, n, width)
        current, previous = x.new_empty(2, min(n, step_rows), width)
        carry = x.new_empty(width)   # the previous step's last frame's product with P0
        for i in range(b):
            for lo in range(0, n, step_rows):
                rows = min(step_rows, n - lo)
                step, dest = frames[i, lo:lo + rows], out[i, lo:lo + rows]
                if elu:
                    F.elu_(step)
                torch.mm(step, packed[1], out=current[:rows])
                torch.mm(step, packed[0], out=previous[:rows])
                if self.bias is None:
                    dest.copy_(current[:rows])
                else:
                    torch.add(current[:rows], self.bias, out=dest)
                if lo:
                    dest[0] += carry
                dest[1:] += previous[:rows - 1]
                carry.copy_(previous[rows - 1])
        return out


_ROWS = 1024   # frames per step and thread of a strided conv: 1024 x 256-768 floats, 1-3 MiB


def _pack_strided(weight: torch.Tensor) -> torch.Tensor:
    """A conv kernel [out, in, 2 x stride] as two matrices [2, stride x in, out] (the first and the
    second `stride` taps), rows in the order of a time-major frame (tap, channel)."""
    out, cin, kernel = weight.shape
    return weight.view(out, cin, 2, kernel // 2).permute(2, 3, 1, 0).reshape(2, kernel // 2 * cin, out).contiguous()


class CausalConvTranspose1d(PlainWeight, WeightNormConvTranspose1d):
    """Plain transposed conv (kernel 2 x stride), the overlap trimmed on the right: n -> n x stride."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__(cin, cout, kernel, stride, causal=True)
        self._use_plain_weight()


class Downsample(CausalConv1d):
    """25 -> 12.5 Hz: conv (kernel 2 x stride, no bias) whose left padding repeats the first frame."""

    def forward(self, x: torch.Tensor, elu: bool = False) -> torch.Tensor:
        x = torch.cat([x[:, :1].expand(-1, self.pad_left, -1), x], dim=1)
        return conv_time_major(x, cached_pack(self, self.weight(), channels_last_kernel), None, self.stride)


class Upsample(nn.Module):
    """12.5 -> 25 Hz: depthwise transposed conv, kernel 2 x stride, no bias, trimmed on the right.
    Output frame stride x m + j = x[m] w[j] + x[m - 1] w[j + stride]."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.zeros(dim, 1, 2 * stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> [B, T x stride, C]."""
        b, t, c = x.shape
        x = x.contiguous()
        taps = self.weight[:, 0].t().contiguous()                 # [2 x stride, C]
        out = x[:, :, None, :] * taps[None, None, :self.stride]   # [B, T, stride, C]
        out[:, 1:] += x[:, :-1, None, :] * taps[None, None, self.stride:]
        return out.view(b, t * self.stride, c)


class _Layers:
    """The conv factories encodec_seanet's EncodecResidualUnit asks for, as Mimi builds them."""

    true_skip = True

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Module:
        return CausalConv1d(cin, cout, kernel, stride, dilation)


def _units(dim: int, cfg: CodecConfig) -> list[nn.Module]:
    return [EncodecResidualUnit(dim, cfg.dilation_base ** j, cfg, _Layers()) for j in range(cfg.n_residual_layers)]


class MimiEncoder(nn.Module):
    """SEANet: waveform [B, T, 1] (time-major) -> [B, T / 960, dimension]. Layer indices follow
    moshi's `encoder.model` so checkpoints map by renaming suffixes."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        nf, mult = cfg.encoder_filters, 1
        model: list[nn.Module] = [CausalConv1d(cfg.channels, nf, cfg.kernel_size)]
        for ratio in reversed(cfg.ratios[1:]):
            model += _units(mult * nf, cfg)
            model += [nn.ELU(inplace=True), CausalConv1d(mult * nf, 2 * mult * nf, 2 * ratio, stride=ratio)]
            mult *= 2
        model += [nn.ELU(inplace=True), CausalConv1d(mult * nf, cfg.dimension, cfg.last_kernel_size)]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_stack(self.model, x)


class MimiDecoder(nn.Module):
    """SEANet: [B, T, dimension] (time-major) -> waveform [B, T x 960, 1]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        nf, mult = cfg.decoder_filters, 2 ** (len(cfg.ratios) - 1)
        model: list[nn.Module] = [CausalConv1d(cfg.dimension, mult * nf, cfg.kernel_size)]
        for ratio in cfg.ratios[1:]:
            model += [nn.ELU(inplace=True), CausalConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, ratio)]
            mult //= 2
            model += _units(mult * nf, cfg)
        model += [nn.ELU(inplace=True), CausalConv1d(nf, cfg.channels, cfg.last_kernel_size)]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_stack(self.model, x)


class SplitRVQ(nn.Module):
    """Level 0 on one projection of the latent, levels 1... on another; codes [B, n_q, T]."""

    def __init__(self, dim: int, codebook_dim: int, n_quantizers: int, codebook_size: int, semantic_levels: int):
        super().__init__()
        self.semantic_levels = semantic_levels
        self.semantic_in = nn.Linear(dim, codebook_dim, bias=False)
        self.semantic_out = nn.Linear(codebook_dim, dim, bias=False)
        self.semantic = ResidualVQ(semantic_levels, codebook_size, codebook_dim)
        self.acoustic_in = nn.Linear(dim, codebook_dim, bias=False)
        self.acoustic_out = nn.Linear(codebook_dim, dim, bias=False)
        self.acoustic = ResidualVQ(n_quantizers - semantic_levels, codebook_size, codebook_dim)

    def encode(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        """latent [B, T, dim] (time-major) -> codes [B, n_q, T] (int64)."""
        split = self.semantic_levels
        codes = self.semantic.encode(F.linear(latent, self.semantic_in.weight).transpose(1, 2), min(n_q, split))
        if n_q > split:
            rest = self.acoustic.encode(F.linear(latent, self.acoustic_in.weight).transpose(1, 2), n_q - split)
            codes = torch.cat([codes, rest], dim=1)
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, T] (any prefix of the levels) -> latent [B, T, dim] (time-major)."""
        split = self.semantic_levels
        latent = F.linear(self.semantic.decode(codes[:, :split]).transpose(1, 2), self.semantic_out.weight)
        if codes.shape[1] > split:
            latent += F.linear(self.acoustic.decode(codes[:, split:]).transpose(1, 2), self.acoustic_out.weight)
        return latent


class MimiCodecModel(nn.Module):
    whole_input = False   # causal with bounded context: it can be encoded in windows

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        extra = config.extra
        stride = config.ratios[0]
        self.encoder = MimiEncoder(config)
        self.encoder_transformer = MimiTransformer(config.dimension, extra["transformer"])
        self.downsample = Downsample(config.dimension, config.dimension, 2 * stride, stride, bias=False)
        self.quantizer = SplitRVQ(config.dimension, int(extra["codebook_dim"]), config.n_quantizers,
                                  config.codebook_size, int(extra["semantic_levels"]))
        self.upsample = Upsample(config.dimension, stride)
        self.decoder_transformer = MimiTransformer(config.dimension, extra["transformer"])
        self.decoder = MimiDecoder(config)

    # ---- the codec interface (rvqtool/model/interface.py) ---------------------------------
    def encode_latents(self, wav: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        """wav [B, 1, S] -> latents [B, dimension, ceil(S / hop)]; zeros pad the last frame, as
        the reference pads. `first_frame`: the frame (of the file) at which wav starts, so that a
        window gets the whole file's rotary positions and hence its arithmetic exactly."""
        hop = self.config.hop_length
        wav = F.pad(wav, (0, -wav.shape[-1] % hop))
        x = self.encoder(wav.transpose(1, 2))
        x = self.encoder_transformer(x, first_frame * self.config.ratios[0])
        return self.downsample(x).transpose(1, 2)

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        """latents [B, dimension, T] -> codes [B, n_q, T] (int64)."""
        return self.quantizer.encode(latents.transpose(1, 2), n_q)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, T] -> latents [B, dimension, T]."""
        return self.quantizer.decode(codes).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        """latents [B, dimension, T] -> wav [B, 1, T x hop]."""
        x = self.upsample(latents.transpose(1, 2))
        x = self.decoder_transformer(x, first_frame * self.config.ratios[0])
        return self.decoder(x).transpose(1, 2)

    def encoder_stream(self, batch: int) -> "MimiEncoderStream":
        """A stream of `batch` signals: feed whole frames of audio in order, get their latents,
        equal to the whole input's (see MimiEncoderStream)."""
        return MimiEncoderStream(self, batch)

    def decoder_stream(self, batch: int) -> "MimiDecoderStream":
        """A stream of `batch` latent sequences: feed frames in order, get their audio."""
        return MimiDecoderStream(self, batch)

    def encoder_context(self) -> tuple[int, int]:
        """(left, right) samples that make a window's frames those of the whole input: the
        transformer's windows through every layer (at 25 Hz) plus the convs' reach, in whole
        frames; nothing on the right (causal)."""
        inner = self.config.hop_length // self.config.ratios[0]
        reach = sum((m.kernel_size - 1) * m.dilation * _stride_before(self.encoder.model, m)
                    for m in self.encoder.model.modules() if isinstance(m, PaddedConv1d))
        frames = self.encoder_transformer.context_frames() + self.downsample.pad_left
        left = reach + frames * inner
        return math.ceil(left / self.config.hop_length) * self.config.hop_length, 0

    def decoder_context(self) -> tuple[int, int]:
        """(left, right) frames that make a window's audio that of the whole input."""
        inner = self.decoder_transformer.context_frames() + _decoder_conv_reach(self.decoder.model)   # at 25 Hz
        return 1 + math.ceil(inner / self.config.ratios[0]), 0   # 1: the upsampling's reach


def _stride_before(stack: nn.Sequential, target: nn.Module) -> int:
    """Product of the strides of the convs that come before `target` in `stack`."""
    stride = 1
    for m in stack.modules():
        if m is target:
            return stride
        if isinstance(m, PaddedConv1d):
            stride *= m.stride
    raise ValueError("not in the stack")


def _decoder_conv_reach(stack: nn.Sequential) -> int:
    """25 Hz frames before an output sample's frame that reach it through the decoder's convs."""
    reach, step = 0.0, 1.0
    for m in stack.modules():
        if isinstance(m, CausalConvTranspose1d):
            reach += math.ceil(m.kernel_size / m.stride) * step
            step /= m.stride
        elif isinstance(m, PaddedConv1d):
            reach += (m.kernel_size - 1) * m.dilation * step
    return math.ceil(reach)


# ---- streaming -----------------------------------------------------------------------------
# Every layer is causal, so a stream keeps, per layer, only what its next output still needs of
# the past: a conv the last pad_left samples of its input, a transposed conv its last input frame,
# an attention layer the keys and values of its last context - 1 frames (KeyValueCache). Each
# piece is computed by the layer's own forward on [kept past, new input] with the outputs that
# belong to the past dropped: the whole pass's computation, on inputs of another width (so equal
# within float rounding; the first feed is exactly the whole pass's start).

Tails = dict[nn.Module, torch.Tensor]


def _stream_conv(conv: PaddedConv1d, x: torch.Tensor, tails: Tails, elu: bool = False) -> torch.Tensor:
    """Causal conv on the next samples x [B, n, C] (n a multiple of its stride), given the input it
    kept (zeros at the start: its causal padding). The tail is kept before the ELU, as the whole
    pass applies the ELU to the padded input."""
    keep = conv.pad_left
    if keep == 0:
        return conv(x, elu)
    past = tails.get(conv)
    joined = torch.cat([x.new_zeros(x.shape[0], keep, x.shape[2]) if past is None else past, x], dim=1)
    tails[conv] = joined[:, -keep:].clone()
    return conv(x, elu) if past is None else conv(joined, elu)[:, keep // conv.stride:]


def _stream_transposed(layer: nn.Module, x: torch.Tensor, tails: Tails) -> torch.Tensor:
    """Transposed conv (kernel 2 x stride) on the next frames x [B, t, C]: its output rows for a
    frame take that frame's first taps and the previous frame's second taps."""
    past = tails.get(layer)
    joined = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]) if past is None else past, x], dim=1)
    tails[layer] = joined[:, -1:].clone()
    return layer(x) if past is None else layer(joined)[:, layer.stride:]


def _stream_downsample(layer: Downsample, x: torch.Tensor, tails: Tails) -> torch.Tensor:
    """The 25 -> 12.5 Hz conv on the next frames; at the start its padding repeats the first frame."""
    past = tails.get(layer)
    joined = torch.cat([x[:, :1].expand(-1, layer.pad_left, -1) if past is None else past, x], dim=1)
    tails[layer] = joined[:, -layer.pad_left:].clone()
    return conv_time_major(joined, cached_pack(layer, layer.weight(), channels_last_kernel), None, layer.stride)


def _stream_stack(layers: nn.Sequential, x: torch.Tensor, tails: Tails) -> torch.Tensor:
    """`run_stack` (an ELU before a conv done in the conv's padding) with every layer streamed."""
    pending: nn.Module | None = None
    for layer in layers:
        if pending is not None and isinstance(layer, PaddedConv1d):
            x, pending = _stream_conv(layer, x, tails, elu=True), None
            continue
        if pending is not None:
            x, pending = pending(x), None
        if isinstance(layer, nn.ELU):
            pending = layer
        elif isinstance(layer, PaddedConv1d):
            x = _stream_conv(layer, x, tails)
        elif isinstance(layer, CausalConvTranspose1d):
            x = _stream_transposed(layer, x, tails)
        else:   # a residual unit with an identity shortcut (Mimi's)
            _, conv, elu, project = layer.block
            x = project(elu(_stream_conv(conv, x, tails, elu=True))).add_(layer.shortcut(x))
    return x if pending is None else pending(x)


class _Stream:
    """State shared by both directions: conv tails, per-layer key/value caches, frames fed."""

    def __init__(self, model: MimiCodecModel, batch: int, transformer: MimiTransformer):
        self.model, self.batch = model, batch
        self.tails: Tails = {}
        self.caches: list[KeyValueCache] = transformer.caches()
        self.position = 0   # transformer (25 Hz) frames fed so far: the next frame's RoPE position

    def _check(self, x: torch.Tensor, channels: int, multiple: int, what: str) -> None:
        if x.ndim != 3 or x.shape[0] != self.batch or x.shape[1] != channels or x.shape[2] == 0 or x.shape[2] % multiple:
            raise ValueError(f"feed {what} [{self.batch}, {channels}, k x {multiple}] with k >= 1, got {list(x.shape)}")

    def state_numel(self) -> int:
        """Elements the stream holds between feeds (bounded: it does not grow with the feeds)."""
        return sum(t.numel() for t in self.tails.values()) + sum(c.numel() for c in self.caches)


class MimiEncoderStream(_Stream):
    """Audio in whole frames, in order -> their latents, equal to `encode_latents` of the whole
    input (the same arithmetic; tests/test_mimi.py measures it), with state of a fixed size."""

    def __init__(self, model: MimiCodecModel, batch: int):
        super().__init__(model, batch, model.encoder_transformer)

    def feed(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, k x hop] (k >= 1) -> latents [B, dimension, k]."""
        self._check(wav, 1, self.model.config.hop_length, "audio")
        model = self.model
        x = _stream_stack(model.encoder.model, wav.transpose(1, 2), self.tails)
        x = model.encoder_transformer(x, self.position, self.caches)
        self.position += x.shape[1]
        return _stream_downsample(model.downsample, x, self.tails).transpose(1, 2)


class MimiDecoderStream(_Stream):
    """Latents in order -> their audio, equal to `decode_latents` of the whole sequence."""

    def __init__(self, model: MimiCodecModel, batch: int):
        super().__init__(model, batch, model.decoder_transformer)

    def feed(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, dimension, k] (k >= 1) -> wav [B, 1, k x hop]."""
        model = self.model
        self._check(latents, model.config.dimension, 1, "latents")
        x = _stream_transposed(model.upsample, latents.transpose(1, 2), self.tails)
        x = model.decoder_transformer(x, self.position, self.caches)
        self.position += x.shape[1]
        return _stream_stack(model.decoder.model, x, self.tails).transpose(1, 2)
