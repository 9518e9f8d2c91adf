"""Nearest-codebook search and residual quantisation, independent of audio.

Shipped as `rvqtool.kernels`. One dispatcher picks the implementation by device; today the
torch reference serves every device (the numba and Triton kernels plug in here).
"""
from __future__ import annotations

import torch

from . import reference

__all__ = ["nearest", "rvq_encode", "rvq_decode"]


def _check(x: torch.Tensor, codebook: torch.Tensor, x_ndim: int, cb_ndim: int) -> None:
    if x.ndim != x_ndim or codebook.ndim != cb_ndim:
        raise ValueError(f"expected x with {x_ndim} dims and codebooks with {cb_ndim}, "
                         f"got {tuple(x.shape)} and {tuple(codebook.shape)}")
    if x.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"dimension mismatch: x has D={x.shape[-1]}, codebook D={codebook.shape[-1]}")
    if x.dtype != codebook.dtype or not x.is_floating_point():
        raise TypeError(f"x and codebook must share a floating dtype, got {x.dtype} and {codebook.dtype}")
    if x.device != codebook.device:
        raise ValueError(f"x is on {x.device} but the codebook is on {codebook.device}")
    if not (torch.isfinite(x).all() and torch.isfinite(codebook).all()):
        raise ValueError("x or codebook holds NaN or inf")


def nearest(x: torch.Tensor, codebook: torch.Tensor, return_distances: bool = False):
    """For x [N, D] and codebook [K, D]: indices [N] (and squared distances [N])."""
    _check(x, codebook, 2, 2)
    return reference.nearest(x.contiguous(), codebook.contiguous(), return_distances)


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """For x [N, D] and codebooks [L, K, D]: codes [L, N] (int64)."""
    _check(x, codebooks, 2, 3)
    return reference.rvq_encode(x.contiguous(), codebooks.contiguous())


def rvq_decode(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """For codes [L', N] (L' <= L) and codebooks [L, K, D]: the summed vectors [N, D]."""
    if codes.ndim != 2 or codes.shape[0] > codebooks.shape[0]:
        raise ValueError(f"codes must be [levels <= {codebooks.shape[0]}, N], got {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebooks.shape[1]):
        raise ValueError(f"code indices must lie in [0, {codebooks.shape[1]})")
    return reference.rvq_decode(codes.long(), codebooks)
