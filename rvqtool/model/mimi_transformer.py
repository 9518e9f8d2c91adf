"""Mimi's causal transformer (the 8 layers after its encoder and before its decoder), time-major.

Pre-norm layers: x + scale_1 * attention(LayerNorm(x)), then x + scale_2 * MLP(LayerNorm(x)),
the MLP linear -> GELU -> linear without biases; attention with rotary positions (RoPE) and a
sliding causal window: frame t sees frames t - context + 1 ... t.

Attention runs block by block: the queries of up to `context` consecutive frames against the
keys from `context - 1` frames before the block, never a [T, T] matrix, so memory grows with
T x context (the reference's mask is T^2: 10 minutes at 25 Hz is 225 M entries). Blocks start at
whole multiples of `context` in absolute frames (`first` says where the input starts) and always
meet 2 x context - 1 key slots, so a frame's attention is the same computation in the whole
file, in a window and in a stream (`KeyValueCache` holding the keys it needs of earlier feeds).

Queries and keys use RoPE's "halves" layout (the first half of each head's dims rotates with the
second half; transformers' layout): moshi's interleaved checkpoints are permuted to it on load
(rvqtool/pretrained/mimi.py). The angles are those moshi computes, t x exp(-i log(period) 2 / D).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _band(offset: int, queries: int, keys: int, context: int, device: torch.device) -> torch.Tensor:
    """[queries, keys] mask: query i (key offset + i) sees keys offset + i - context + 1 ... offset + i."""
    delta = torch.arange(queries, device=device).view(-1, 1) + offset - torch.arange(keys, device=device).view(1, -1)
    return (delta >= 0) & (delta < context)


class MimiAttention(nn.Module):
    def __init__(self, dim: int, heads: int, context: int, max_period: float):
        super().__init__()
        self.heads, self.head_dim, self.context, self.max_period = heads, dim // heads, context, max_period
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)   # rows: queries, keys, values
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def rotate(self, x: torch.Tensor, first: int) -> torch.Tensor:
        """RoPE on x [B, T, H, D] (halves layout) for positions first ... first + T - 1."""
        half = self.head_dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=x.device)
                          * (-math.log(self.max_period) * 2 / self.head_dim))
        positions = torch.arange(first, first + x.shape[1], dtype=torch.float32, device=x.device)
        angles = (freqs * positions.view(-1, 1)).view(1, -1, 1, half)
        cos, sin = torch.cos(angles), torch.sin(angles)
        real, imag = x[..., :half], x[..., half:]
        return torch.cat([real * cos - imag * sin, real * sin + imag * cos], dim=-1)

    def forward(self, x: torch.Tensor, first: int = 0, cache: KeyValueCache | None = None) -> torch.Tensor:
        """x [B, T, dim] -> [B, T, dim]; `first`: the absolute position of x's first frame;
        `cache`: the keys and values of the frames just before it (streaming), extended here."""
        b, t, dim = x.shape
        qkv = F.linear(x, self.in_proj.weight).view(b, t, 3, self.heads, self.head_dim)
        q = self.rotate(qkv[:, :, 0], first).mul_(self.head_dim ** -0.5).transpose(1, 2)   # [B, H, T, D]
        k = self.rotate(qkv[:, :, 1], first).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        past = 0
        if cache is not None:
            past = cache.frames
            k, v = cache.extend(k, v)
        out = self._attend(q, k, v, first, past)
        return F.linear(out.transpose(1, 2).reshape(b, t, dim), self.out_proj.weight)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first: int, past: int) -> torch.Tensor:
        """q [B, H, t, D] at positions first ..., k and v [B, H, past + t, D] from first - past.

        Query blocks start at whole multiples of w = context in absolute frames; each block's
        queries meet the same 2w - 1 key slots (from w - 1 before the block; slots outside the
        keys given are zeros, masked), so a query's attention is the same computation whether
        the frames around it come in one pass, in a window or in a stream, once the w - 1 keys
        before it are among those given (the products that make q, k and v still sum in an order
        that depends on how many rows they get: equal within float rounding)."""
        w, t = self.context, q.shape[2]
        block_start = first // w * w
        blocks = -(-(first + t - block_start) // w)
        left = first - past - (block_start - w + 1)          # key slot of the first key given
        right = blocks * w + w - 1 - left - k.shape[2]
        k, v = (F.pad(z, (0, 0, left, right)) for z in (k, v))
        real = torch.zeros(k.shape[2], dtype=torch.bool, device=q.device)
        real[left:left + past + t] = True
        band = _band(w - 1, w, 2 * w - 1, w, q.device)
        out = torch.empty_like(q)
        for j in range(blocks):
            lo, hi = max(first, block_start + j * w), min(first + t, block_start + (j + 1) * w)
            rows = slice(lo - block_start - j * w, hi - block_start - j * w)   # of the block's w queries
            keys = slice(j * w, j * w + 2 * w - 1)
            out[:, :, lo - first:hi - first] = F.scaled_dot_product_attention(
                q[:, :, lo - first:hi - first], k[:, :, keys], v[:, :, keys], band[rows] & real[keys], scale=1.0)
        return out


class KeyValueCache:
    """The rotated keys and values of the last `context - 1` frames of one attention layer: all a
    streamed frame needs of the past, so the state stays that size however long the stream."""

    def __init__(self, context: int):
        self.keep = context - 1
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys and values followed by k, v [B, H, t, D]; keeps the last `keep` frames."""
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k[:, :, -self.keep:].clone(), v[:, :, -self.keep:].clone()
        return k, v

    def numel(self) -> int:
        return 0 if self.keys is None else self.keys.numel() + self.values.numel()


class MimiTransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, feedforward: int, context: int, max_period: float,
                 layer_scale: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.self_attn = MimiAttention(dim, heads, context, max_period)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.linear1 = nn.Linear(dim, feedforward, bias=False)
        self.linear2 = nn.Linear(feedforward, dim, bias=False)
        self.layer_scale_1 = nn.Parameter(torch.ones(dim)) if layer_scale else None
        self.layer_scale_2 = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def forward(self, x: torch.Tensor, first: int = 0, cache: KeyValueCache | None = None) -> torch.Tensor:
        update = self.self_attn(self.norm1(x), first, cache)
        x = x + (update if self.layer_scale_1 is None else update.mul_(self.layer_scale_1))
        hidden = F.gelu(F.linear(self.norm2(x), self.linear1.weight))
        update = F.linear(hidden, self.linear2.weight)
        return x + (update if self.layer_scale_2 is None else update.mul_(self.layer_scale_2))


class MimiTransformer(nn.Module):
    """Time-major [B, T, dim] -> [B, T, dim]."""

    def __init__(self, dim: int, settings: dict):
        super().__init__()
        self.context = int(settings["context"])
        self.layers = nn.ModuleList(
            MimiTransformerLayer(dim, int(settings["heads"]), int(settings["feedforward"]), self.context,
                                 float(settings["max_period"]), bool(settings["layer_scale"]),
                                 float(settings["norm_eps"]))
            for _ in range(int(settings["layers"])))

    def context_frames(self) -> int:
        """Frames before a frame that make it exact: per layer, its window (context - 1) and the
        alignment of its attention block (up to context more)."""
        return len(self.layers) * (2 * self.context - 1)

    def caches(self) -> list[KeyValueCache]:
        """Empty per-layer caches for streaming (`forward(..., caches=)`)."""
        return [KeyValueCache(self.context) for _ in self.layers]

    def forward(self, x: torch.Tensor, first: int = 0, caches: list[KeyValueCache] | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, first, None if caches is None else caches[i])
        return x
