"""Mimi's causal transformer (the 8 layers after its encoder and before its decoder), time-major.

Pre-norm layers: x + scale_1 * attention(LayerNorm(x)), then x + scale_2 * MLP(LayerNorm(x)),
the MLP linear -> GELU -> linear without biases; attention with rotary positions (RoPE) and a
sliding causal window: frame t sees frames t - context + 1 ... t.

Attention is computed row by row over exactly each query's own window of keys (the keys as a
strided view of the padded key sequence), never over a [T, T] matrix: memory grows with
T x context, not T^2 (the reference's mask is T^2: 10 minutes at 25 Hz is 225 M entries), and a
frame's attention is the same arithmetic whatever the length of the input, so a frame seen with
enough left context gets the same value in a window as in the whole file.

Queries and keys use RoPE's "halves" layout (the first half of each head's dims rotates with the
second half; transformers' layout): moshi's interleaved checkpoints are permuted to it on load
(rvqtool/pretrained/mimi.py). The angles are those moshi computes, t x exp(-i log(period) 2 / D).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_QUERY_BLOCK = 256   # queries per attention block: bounds the [block, context, head dim] windows


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

    def forward(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:
        """x [B, T, dim] -> [B, T, dim]; `first`: the absolute position of x's first frame."""
        b, t, dim = x.shape
        qkv = F.linear(x, self.in_proj.weight).view(b, t, 3, self.heads, self.head_dim)
        q = self.rotate(qkv[:, :, 0], first).mul_(self.head_dim ** -0.5).transpose(1, 2)   # [B, H, T, D]
        k = self.rotate(qkv[:, :, 1], first).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        w = self.context
        # keys and values of the window of each query: frame t sees padded rows t ... t + w - 1
        keys = F.pad(k, (0, 0, w - 1, 0)).unfold(2, w, 1)      # [B, H, T, D, w] (a view)
        values = F.pad(v, (0, 0, w - 1, 0)).unfold(2, w, 1)
        out = x.new_empty(b, self.heads, t, self.head_dim)
        for start in range(0, t, _QUERY_BLOCK):
            stop = min(start + _QUERY_BLOCK, t)
            scores = torch.matmul(q[:, :, start:stop, None, :], keys[:, :, start:stop])   # [B, H, n, 1, w]
            if start < w - 1:   # the first frames' windows reach before the input: no keys there
                rows = torch.arange(start, stop, device=x.device).view(-1, 1, 1)
                before = torch.arange(w, device=x.device).view(1, 1, -1) < (w - 1 - rows)
                scores.masked_fill_(before, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out[:, :, start:stop] = torch.matmul(weights, values[:, :, start:stop].transpose(-1, -2))[..., 0, :]
        return F.linear(out.transpose(1, 2).reshape(b, t, dim), self.out_proj.weight)


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

    def forward(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:
        update = self.self_attn(self.norm1(x), first)
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
        """Frames before a frame that reach it through every layer's window."""
        return len(self.layers) * (self.context - 1)

    def forward(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, first)
        return x
