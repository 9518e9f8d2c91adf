"""Plain-torch nearest-codebook search: the oracle every faster kernel is tested against.

Distances use the matmul form ||c||^2 - 2 x.c (||x||^2 is the same for every code, so it is
dropped); ties go to the lowest index, as torch.argmin does.
"""
from __future__ import annotations

import torch

_ROWS_PER_BLOCK = 16384  # bounds the N x K distance block to ~64 MB at K = 1024


def nearest(x: torch.Tensor, codebook: torch.Tensor, return_distances: bool = False):
    """Index of the nearest row of `codebook` [K, D] for every row of `x` [N, D]."""
    sq_norms = (codebook * codebook).sum(dim=1)
    indices = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    best = torch.empty(x.shape[0], dtype=x.dtype, device=x.device) if return_distances else None
    for start in range(0, x.shape[0], _ROWS_PER_BLOCK):
        block = x[start:start + _ROWS_PER_BLOCK]
        dist = torch.addmm(sq_norms, block, codebook.t(), alpha=-2.0)
        if return_distances:
            value, index = dist.min(dim=1)
            best[start:start + len(block)] = value + (block * block).sum(dim=1)
        else:
            index = dist.argmin(dim=1)
        indices[start:start + len(block)] = index
    return (indices, best) if return_distances else indices


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Codes [L, N]: level l quantises what levels < l left over."""
    residual = x.clone()
    codes = torch.empty(codebooks.shape[0], x.shape[0], dtype=torch.int64, device=x.device)
    for level, codebook in enumerate(codebooks):
        codes[level] = nearest(residual, codebook)
        residual -= codebook[codes[level]]
    return codes


def rvq_decode(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Sum of the chosen rows over the levels present in `codes` [L', N], L' <= L."""
    out = torch.zeros(codes.shape[1], codebooks.shape[2], dtype=codebooks.dtype, device=codebooks.device)
    for level in range(codes.shape[0]):
        out += codebooks[level][codes[level]]
    return out
