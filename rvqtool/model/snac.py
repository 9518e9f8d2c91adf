"""SNAC (multi-scale neural audio codec, hubertsiuzdak/snac) on our modules.

DAC's blocks (Snake, weight-normed convs with fixed zero padding, residual units with dilations
1/3/9) with four changes: depthwise 7-tap convs in the residual units, no Snake before the
encoder's last conv (a depthwise one), noise blocks after the decoder's transposed convs, and
local attention (non-overlapping windows of `attn_window_size` latent frames, rotary positions
within each window) after the encoder's blocks and before the decoder's (32/44 kHz configs; the
24 kHz speech model has none). Its residual quantiser runs each level at its own rate: level l
averages `vq_strides[l]` latent frames, looks up a factorised l2-normalised code, and repeats the
projected code over those frames.

The input is padded on the right with zeros to a multiple of hop x lcm(vq_strides[0],
attn_window_size or 1) samples, as `SNAC.preprocess` pads it: 2048 samples (one coarse frame)
at 24 kHz, 12288 (four coarse frames, so up to three frames of silence) at 32/44 kHz.

Codes are stored rectangular at the coarsest rate (see `levels_to_rows`): coarse frame j holds
one row per code of any level that falls in it, depth first — at 24 kHz the 7 rows
[c0_j, c1_2j, c2_4j, c2_4j+1, c1_2j+1, c2_4j+2, c2_4j+3], Orpheus's order.

Module names follow SNAC's own (`encoder.block.N`, `decoder.model.N`, `quantizer.quantizers.L`),
so its state dict loads by name. Activations are time-major [B, T, C] inside, as in
rvqtool/model/dac_model.py (oneDNN convs without layout reorders, 1x1 convs as one matrix
product, layer norm and attention without a transpose); sums come out in another order than the
reference's, so latents differ from its own by float rounding.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rvqtool import kernels
from rvqtool.config import CodecConfig
from rvqtool.model.dac_model import PaddedConv, PaddedConvTranspose, Snake
from rvqtool.model.encodec_seanet import cached_pack, channels_last_kernel, pack_transposed, transposed_conv_time_major

_DILATIONS = (1, 3, 9)


# ---- the codes layout: levels of different rates <-> rows at the coarse rate ------------------------
def row_positions(multiples: Sequence[int]) -> list[tuple[int, int]]:
    """(level, index within the coarse frame) of each row, depth first: a code of level l is
    followed by the codes of level l + 1 that fall in its span. `multiples[l]` is how many codes
    level l has per coarse frame ((1, 2, 4) at 24 kHz): 1 first, each dividing the next."""
    def visit(level: int, index: int) -> list[tuple[int, int]]:
        rows = [(level, index)]
        if level + 1 < len(multiples):
            fan_out = multiples[level + 1] // multiples[level]
            for child in range(index * fan_out, (index + 1) * fan_out):
                rows += visit(level + 1, child)
        return rows

    return visit(0, 0)


def rows_for_levels(n_q: int, multiples: Sequence[int]) -> list[int]:
    """Indices, into the rows of all `multiples`' levels, of the rows of the first `n_q` levels
    (in their order): the rows a `n_q`-level encoding holds, and what decoding fewer levels
    picks. At 24 kHz: 1 -> [0], 2 -> [0, 1, 4], 3 -> all 7."""
    return [i for i, (level, _) in enumerate(row_positions(multiples)) if level < n_q]


def levels_to_rows(levels: Sequence[torch.Tensor | np.ndarray]) -> torch.Tensor | np.ndarray:
    """Codes per level [B, T x m_l] (m_0 = 1: the coarsest first) -> rows [B, sum m_l, T]."""
    frames = levels[0].shape[-1]
    multiples = [level.shape[-1] // frames for level in levels]
    rows = [levels[level][:, index::multiples[level]] for level, index in row_positions(multiples)]
    return torch.stack(rows, 1) if isinstance(rows[0], torch.Tensor) else np.stack(rows, 1)


def rows_to_levels(rows: torch.Tensor | np.ndarray, multiples: Sequence[int]) -> list:
    """Rows [B, sum m_l, T] -> codes per level [B, T x m_l], the inverse of `levels_to_rows`."""
    positions = row_positions(multiples)
    if rows.shape[1] != len(positions):
        raise ValueError(f"{rows.shape[1]} rows, but levels of {tuple(multiples)} codes per frame make {len(positions)}")
    levels = []
    for level, m in enumerate(multiples):
        picked = sorted((index, row) for row, (lvl, index) in enumerate(positions) if lvl == level)
        part = rows[:, [row for _, row in picked], :]                    # [B, m, T]
        levels.append(part.swapaxes(1, 2).reshape(rows.shape[0], -1))    # frame-major: t x m + index
    return levels


# ---- layers ------------------------------------------------------------------------------------------
class GroupedConv(PaddedConv):
    """PaddedConv with `groups` (SNAC's depthwise convs: groups = channels).

    A dilated depthwise conv runs as an undilated one over `dilation` interleaved phases: the
    time-major [B, T, C] viewed as [B, T / d, d x C] holds sample t x d + p of channel c at
    (t, p x C + c), so a kernel repeated over the d phases, without dilation, computes the same
    sums in the same order. oneDNN's channels-last depthwise kernel is 20-60x slower with a
    dilation than without one."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, padding: int = 0, groups: int = 1):
        super().__init__(cin // groups, cout, kernel, dilation=dilation, padding=padding)
        self.groups = groups

    def _phase_kernel(self, weight: torch.Tensor) -> torch.Tensor:
        return channels_last_kernel(weight.repeat(self.dilation, 1, 1))

    def forward(self, x: torch.Tensor, snake: Snake | None = None) -> torch.Tensor:
        """x [B, T, C] (time-major) -> [B, T', out]; `snake`: of snake(x), written straight into
        the conv's input (padded with zeros at the end where the phases need it)."""
        b, t, c = x.shape
        d = self.dilation
        phased = d > 1 and self.groups == c and self.padding % d == 0
        extra = -t % d if phased else 0
        if snake is not None or extra:   # (F.pad along time is ~4x slower than this copy)
            buffer = x.new_empty(b, t + extra, c)
            buffer[:, t:] = 0
            if snake is None:
                buffer[:, :t] = x
            else:
                snake_into(snake, x, buffer[:, :t])
            x = buffer
        if self.groups == 1:
            return super().forward(x)
        if not phased:
            kernel = cached_pack(self, self.weight(), channels_last_kernel)
            y = F.conv2d(x.transpose(1, 2).unsqueeze(2), kernel, self.bias, padding=(0, self.padding),
                         dilation=(1, d), groups=self.groups)
            return y.squeeze(2).transpose(1, 2)
        phases = x.view(b, (t + extra) // d, d * c)
        kernel = cached_pack(self, self.weight(), self._phase_kernel)
        bias = None if self.bias is None else self.bias.repeat(d)
        y = F.conv2d(phases.transpose(1, 2).unsqueeze(2), kernel, bias, padding=(0, self.padding // d),
                     groups=d * c)
        y = y.squeeze(2).transpose(1, 2).reshape(b, t + extra, c)
        return y[:, :t] if extra else y


def snake_into(snake: Snake, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """snake(x) written into `out` (of x's shape), element for element as Snake computes it."""
    if torch.is_grad_enabled():   # out= ops do not record autograd
        return out.copy_(snake(x))
    alpha = snake.alpha.view(1, 1, -1)
    return torch.mul(alpha, x, out=out).sin_().pow_(2).mul_((alpha + 1e-9).reciprocal()).add_(x)


class ConvTransposeOutputPadding(PaddedConvTranspose):
    """The transposed conv with `stride % 2` more output at the end, as SNAC's output_padding gives
    (odd strides would otherwise lose a sample per input frame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = transposed_conv_time_major(x, cached_pack(self, self.weight(), pack_transposed), self.bias, self.stride)
        return y[:, self.padding: y.shape[1] - self.padding + self.stride % 2]


def _conv(cin: int, cout: int, kernel: int, dilation: int = 1, groups: int = 1, bias: bool = True) -> GroupedConv:
    """A stride-1 conv that keeps the length (padding (kernel - 1) x dilation / 2 each side)."""
    conv = GroupedConv(cin, cout, kernel, dilation, (kernel - 1) * dilation // 2, groups)
    if not bias:
        conv.bias = None
    return conv


class SNACResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(Snake(dim), _conv(dim, dim, 7, dilation, groups), Snake(dim), _conv(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        snake, conv, snake_2, project = self.block
        return project(snake_2(conv(x, snake))).add_(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int, groups: int):
        super().__init__()
        half = dim // 2
        self.block = nn.Sequential(*(SNACResidualUnit(half, d, groups) for d in _DILATIONS), Snake(half),
                                   PaddedConv(half, dim, 2 * stride, stride, padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class NoiseBlock(nn.Module):
    """x + n * W x, n ~ N(0, 1) drawn per frame [B, 1, T] as SNAC draws it (same shape, same
    order of draws), from `generator`, or torch's global generator when it is None."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = _conv(dim, dim, 1, bias=False)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        noise = torch.randn((b, 1, t), generator=self.generator, device=x.device, dtype=x.dtype)
        return self.linear(x).mul_(noise.view(b, t, 1)).add_(x)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, noise: bool, groups: int):
        super().__init__()
        layers: list[nn.Module] = [Snake(cin), ConvTransposeOutputPadding(cin, cout, 2 * stride, stride,
                                                                          math.ceil(stride / 2))]
        if noise:
            layers.append(NoiseBlock(cout))
        layers += [SNACResidualUnit(cout, d, groups) for d in _DILATIONS]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Rotary(nn.Module):
    """Rotary positions 0..n-1 within each attention window (SNAC's SinusoidalEmbeddings without
    xpos: the rotation only). `inv_freq` is a buffer of SNAC's state dict."""

    def __init__(self, dim_head: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim_head, 2).float() / dim_head)))
        self._tables: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def tables(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [n, dim_head] of the angles position x frequency (both halves alike)."""
        if self._tables is None or self._tables[0] != n or self._tables[1].device != self.inv_freq.device:
            angles = torch.outer(torch.arange(n, device=self.inv_freq.device).type_as(self.inv_freq), self.inv_freq)
            angles = torch.cat([angles, angles], dim=-1)
            self._tables = (n, angles.cos(), angles.sin())
        return self._tables[1], self._tables[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., n, dim_head] -> x cos + rotate_half(x) sin, rotate_half(a, b) = (-b, a)."""
        cos, sin = self.tables(x.shape[-2])
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-second, first], dim=-1) * sin


class LocalAttention(nn.Module):
    """Pre-norm multi-head self-attention within non-overlapping windows of `window` frames, added
    to its input; the length must be a whole number of windows (the padding rule sees to it)."""

    def __init__(self, dim: int, window: int, dim_head: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.heads, self.window = dim // dim_head, window
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.rel_pos = Rotary(dim_head)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] (time-major) -> [B, T, C]."""
        b, t, c = x.shape
        windows = t // self.window
        qkv = self.to_qkv(self.norm(x)).view(b, windows, self.window, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)           # each [B, heads, windows, n, d]
        out = F.scaled_dot_product_attention(self.rel_pos(q), self.rel_pos(k), v)
        out = out.permute(0, 2, 3, 1, 4).reshape(b, t, c)
        return self.to_out(out).add_(x)


class Encoder(nn.Module):
    """Waveform [B, 1, n] (n a multiple of the padding unit) -> latent [B, T, D] (time-major)."""

    def __init__(self, dim: int, rates: Sequence[int], depthwise: bool, window: int | None):
        super().__init__()
        layers: list[nn.Module] = [_conv(1, dim, 7)]
        for stride in rates:
            dim *= 2
            layers.append(EncoderBlock(dim, stride, dim // 2 if depthwise else 1))
        if window is not None:
            layers.append(LocalAttention(dim, window))
        layers.append(_conv(dim, dim, 7, groups=dim if depthwise else 1))
        self.block = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.block(wav.transpose(1, 2))


class Decoder(nn.Module):
    """Latent [B, T, D] (time-major) -> waveform [B, T x hop, 1]."""

    def __init__(self, latent: int, dim: int, rates: Sequence[int], noise: bool, depthwise: bool, window: int | None):
        super().__init__()
        layers: list[nn.Module] = ([_conv(latent, latent, 7, groups=latent), _conv(latent, dim, 1)] if depthwise
                                   else [_conv(latent, dim, 7)])
        if window is not None:
            layers.append(LocalAttention(dim, window))
        for i, stride in enumerate(rates):
            cout = dim // 2 ** (i + 1)
            layers.append(DecoderBlock(dim // 2 ** i, cout, stride, noise, cout if depthwise else 1))
        layers += [Snake(cout), _conv(cout, 1, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model(latent)


class Level(nn.Module):
    """One quantiser level at `stride` latent frames per code: average, project, nearest
    l2-normalised code; decode projects the raw code back."""

    def __init__(self, latent: int, codebook_size: int, dim: int, stride: int):
        super().__init__()
        self.stride = stride
        self.in_proj = PaddedConv(latent, dim, 1)
        self.out_proj = PaddedConv(dim, latent, 1)
        self.codebook = nn.Embedding(codebook_size, dim)

    def encode(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """residual [B, T, latent] -> (codes [B, T / stride], what they decode to [B, T / stride, latent])."""
        b, t, d = residual.shape
        pooled = residual.view(b, t // self.stride, self.stride, d).mean(2) if self.stride > 1 else residual
        projected = self.in_proj(pooled)
        flat = projected.reshape(-1, projected.shape[-1])
        codes = kernels.nearest(F.normalize(flat), F.normalize(self.codebook.weight)).view(b, -1)
        # SNAC's straight-through z_e + (z_q - z_e): equal to the code's vector up to rounding,
        # kept so that the residual the next level sees rounds as the reference's does
        chosen = projected + (self.codebook.weight[codes] - projected)
        return codes, self.out_proj(chosen)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T / stride] -> [B, T / stride, latent]."""
        return self.out_proj(self.codebook.weight[codes])


class MultiScaleRVQ(nn.Module):
    def __init__(self, latent: int, codebook_size: int, dim: int, strides: Sequence[int]):
        super().__init__()
        self.quantizers = nn.ModuleList(Level(latent, codebook_size, dim, s) for s in strides)

    def encode(self, latent: torch.Tensor, n_q: int) -> list[torch.Tensor]:
        """latent [B, T, D] (time-major) -> codes of the first n_q levels, [B, T / stride_l] each."""
        residual, codes = latent.clone(), []
        b, t, d = residual.shape
        for level in self.quantizers[:n_q]:
            level_codes, decoded = level.encode(residual)
            codes.append(level_codes)
            residual.view(b, t // level.stride, level.stride, d).sub_(decoded[:, :, None])
        return codes

    def decode(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Codes of the first levels -> latent [B, T, D] (time-major), summed in level order."""
        total = None
        for level, level_codes in zip(self.quantizers, codes):
            part = level.decode(level_codes).repeat_interleave(level.stride, dim=1)
            total = part if total is None else total.add_(part)
        return total


# ---- the model ---------------------------------------------------------------------------------------
class SNACCodecModel(nn.Module):
    """config.extra: encoder_rates, vq_strides, codebook_dim, attn_window_size (None: no attention),
    noise, depthwise; config.ratios = (vq_strides[0], *decoder_rates), so hop_length and frame_rate
    are the coarse frame's; config.n_quantizers counts levels."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        extra = config.extra
        self.vq_strides = tuple(int(s) for s in extra["vq_strides"])
        self.window = extra.get("attn_window_size")
        self.latent_hop = math.prod(int(r) for r in extra["encoder_rates"])
        # latent frames per coarse frame, and codes per coarse frame at each level
        self.latent_frames_per_frame = self.vq_strides[0]
        self.multiples = tuple(self.vq_strides[0] // s for s in self.vq_strides)
        self.pad_unit = self.latent_hop * math.lcm(self.vq_strides[0], self.window or 1)
        depthwise, latent = bool(extra["depthwise"]), config.dimension
        self.encoder = Encoder(config.encoder_filters, extra["encoder_rates"], depthwise, self.window)
        self.quantizer = MultiScaleRVQ(latent, config.codebook_size, int(extra["codebook_dim"]), self.vq_strides)
        self.decoder = Decoder(latent, config.decoder_filters, config.ratios[1:], bool(extra["noise"]), depthwise,
                               self.window)

    @property
    def whole_input(self) -> bool:
        """Attention windows are aligned to the start of the input and the padding fills the last
        one: windows that start at multiples of `pad_unit`, with two units of context, keep the
        whole file's codes (tests/test_snac.py), windows at any frame boundary do not. Without
        attention a coarse frame's codes depend only on `encoder_context` samples around it."""
        return self.window is not None

    def padded_length(self, samples: int) -> int:
        """What SNAC pads `samples` to: the next multiple of hop x lcm(vq_strides[0], window)."""
        return -(-samples // self.pad_unit) * self.pad_unit

    def frames(self, samples: int) -> int:
        """Coarse frames (rows' length) the codes of `samples` have."""
        return self.padded_length(samples) // self.config.hop_length

    def rows(self, n_q: int) -> int:
        """Rows of the codes of the first `n_q` levels (1/3/7 at 24 kHz)."""
        return sum(self.multiples[:n_q])

    def level_rows(self, n_q: int) -> list[int]:
        """Indices of the rows of the first `n_q` levels among all rows (not a prefix: depth first)."""
        return rows_for_levels(n_q, self.multiples)

    @property
    def frame_multiple(self) -> int:
        """Coarse frames per padding unit: 1 at 24 kHz, 4 with attention windows of 32 (32/44 kHz)."""
        return self.pad_unit // self.config.hop_length

    # ---- the interface Codec uses --------------------------------------------------------------------
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> latents [B, D, T_fine], the input padded as SNAC pads it."""
        wav = F.pad(wav, (0, self.padded_length(wav.shape[-1]) - wav.shape[-1]))
        return self.encoder(wav).transpose(1, 2)

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        """latents [B, D, T_fine] -> rows [B, rows(n_q), T_fine / vq_strides[0]]."""
        return levels_to_rows(self.quantizer.encode(latents.transpose(1, 2), n_q))

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Rows of the first levels [B, rows(k), T] -> latents [B, D, T x vq_strides[0]]."""
        counts = [self.rows(k) for k in range(1, len(self.multiples) + 1)]
        if codes.shape[1] not in counts:
            raise ValueError(f"{codes.shape[1]} rows: codes of this model have {', '.join(map(str, counts))}")
        levels = rows_to_levels(codes, self.multiples[:counts.index(codes.shape[1]) + 1])
        return self.quantizer.decode(levels).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """latents [B, D, T] -> wav [B, 1, T x hop / vq_strides[0]]. The noise blocks draw from
        `generator`; None: a generator seeded 0, so that the same codes give the same audio."""
        if self.window is not None and latents.shape[-1] % self.window:
            raise ValueError(f"{latents.shape[-1]} latent frames: this model decodes whole attention windows "
                             f"of {self.window} ({self.pad_unit // self.config.hop_length} frames of codes)")
        if generator is None:
            generator = torch.Generator(latents.device).manual_seed(0)
        for module in self.decoder.modules():
            if isinstance(module, NoiseBlock):
                module.generator = generator
        try:
            return self.decoder(latents.transpose(1, 2)).transpose(1, 2)
        finally:
            for module in self.decoder.modules():
                if isinstance(module, NoiseBlock):
                    module.generator = None

    def decode_window(self, latents: torch.Tensor, first_frame: int) -> torch.Tensor:
        """`decode_latents` of a window starting at coarse frame `first_frame`, its noise drawn from
        a generator seeded `first_frame` (the first window's, 0, is the whole pass's seed)."""
        return self.decode_latents(latents, torch.Generator(latents.device).manual_seed(first_frame))

    def encoder_context(self) -> tuple[int, int] | None:
        """Samples either side of a coarse frame that can reach its codes, in whole coarse frames
        (so windows stay aligned to the padding unit); None with attention (see whole_input)."""
        if self.window is not None:
            return None
        reach, rate = Fraction(0), 1     # samples; samples per element at the layer's input
        for layer in self.encoder.block:
            convs = [m for m in layer.modules() if isinstance(m, PaddedConv)]
            for conv in convs:
                reach += (conv.kernel_size - 1) * conv.dilation * rate
                rate *= conv.stride
        hop = self.config.hop_length
        context = math.ceil(reach / hop) * hop
        return context, context

    def decoder_context(self) -> tuple[int, int] | None:
        """Coarse frames either side of a frame whose codes can reach its audio; None with
        attention. Windowed audio equals whole-file audio within rounding with the noise
        zeroed; with noise, each window draws its own."""
        if self.window is not None:
            return None
        reach, rate = Fraction(0), Fraction(1)   # latent frames; latent frames per element
        for module in self.decoder.modules():
            if isinstance(module, PaddedConvTranspose):
                reach += 2 * rate                 # kernel 2 x stride: two input frames per output
                rate /= module.stride
            elif isinstance(module, PaddedConv):
                reach += (module.kernel_size - 1) * module.dilation * rate
        frames = math.ceil(reach / self.latent_frames_per_frame) + 1
        return frames, frames
