"""Nearest-codebook search and residual quantisation on the GPU, in Triton.

One program owns BLOCK_N rows. It sweeps the codebook in tiles of BLOCK_K codes; each tile's
dots come from `tl.dot` over D in chunks of BLOCK_D, the distance `||c||^2 - 2 x.c` is formed
in registers and folded into a running (best, index) per row, so no N x K matrix ever exists.
`rvq_encode` runs every level inside the same program, the block's residual held in a scratch
buffer that only this program touches (between levels a barrier makes its writes visible).

Determinism: a row's dots depend on that row, the code and the reduction split BLOCK_D; BLOCK_D
is a function of D alone and is never autotuned (only BLOCK_N, BLOCK_K and the warp count are),
so a row's code does not depend on N or on the other rows. float32 uses
`input_precision="ieee"` (no TF32: fma chains over each BLOCK_D chunk). fp16/bf16 multiply on
tensor cores and accumulate in float32; there the hardware's order inside one MMA may differ
between the instruction shapes that different autotuned BLOCK_N pick, so bit-for-bit invariance
is claimed for float32 only (the codec's path). Ties go to the lowest index: within a tile the
smallest index attaining the tile's minimum, across tiles only a strictly smaller distance
replaces the best.

Checked on the CPU with TRITON_INTERPRET=1 (set before triton is imported), where the kernels
run on CPU tensors with fixed block sizes instead of autotuning. The interpreter's `tl.dot`
multiplies bfloat16 operands as raw bits (triton-lang/triton#11584, not supported upstream), so
there bfloat16 tiles are widened to float32 before the dot (products of bfloat16 values are exact
in float32); on a GPU they go to the tensor cores as they are. Not yet run on a GPU.
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the dispatcher falls back to the torch reference
    triton = None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    return triton is not None and (interpreting() or torch.cuda.is_available())


def _block_d(dim: int) -> int:
    """The reduction split over D: fixed per D (never autotuned), so that results are too."""
    return 16 if dim <= 16 else 32 if dim <= 32 else 64


if triton is not None:

    @triton.jit
    def _argmin_tiles(x_ptr, stride_x, c_ptr, cn_ptr, rows, row_mask, N, K, D,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                      PRECISION: tl.constexpr, WIDEN: tl.constexpr):
        """(best distance without ||x||^2, index) of rows `rows` against codebook [K, D]."""
        best = tl.full([BLOCK_N], float("inf"), tl.float32)
        best_index = tl.zeros([BLOCK_N], tl.int32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            col_mask = cols < K
            acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
            for d0 in range(0, D, BLOCK_D):
                ds = d0 + tl.arange(0, BLOCK_D)
                d_mask = ds < D
                xs = tl.load(x_ptr + rows[:, None] * stride_x + ds[None, :],
                             mask=row_mask[:, None] & d_mask[None, :], other=0.0)
                cs = tl.load(c_ptr + cols[None, :] * D + ds[:, None],
                             mask=col_mask[None, :] & d_mask[:, None], other=0.0)
                if WIDEN:  # the interpreter's bfloat16 dot (see the module docstring)
                    xs, cs = xs.to(tl.float32), cs.to(tl.float32)
                acc = tl.dot(xs, cs, acc, input_precision=PRECISION)
            norms = tl.load(cn_ptr + cols, mask=col_mask, other=float("inf"))
            dist = norms[None, :] - (acc + acc)
            dist = tl.where(col_mask[None, :], dist, float("inf"))
            tile_min = tl.min(dist, axis=1)
            first = tl.min(tl.where(dist == tile_min[:, None], cols[None, :], 2147483647), axis=1)
            better = tile_min < best
            best = tl.where(better, tile_min, best)
            best_index = tl.where(better, first, best_index)
        return best, best_index

    @triton.jit
    def _nearest_kernel(x_ptr, c_ptr, cn_ptr, index_ptr, best_ptr, N, K, D, stride_x,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                        PRECISION: tl.constexpr, WIDEN: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_mask = rows < N
        rows = rows.to(tl.int64)  # row * stride can pass 2^31
        best, best_index = _argmin_tiles(x_ptr, stride_x, c_ptr, cn_ptr, rows, row_mask, N, K, D,
                                         BLOCK_N, BLOCK_K, BLOCK_D, PRECISION, WIDEN)
        tl.store(index_ptr + rows, best_index.to(tl.int64), mask=row_mask)
        tl.store(best_ptr + rows, best, mask=row_mask)

    @triton.jit
    def _rvq_kernel(residual_ptr, cb_ptr, cn_ptr, codes_ptr, N, K, D, L,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                    PRECISION: tl.constexpr, WIDEN: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_mask = rows < N
        rows = rows.to(tl.int64)
        for level in range(0, L):
            c_ptr = cb_ptr + level * K * D
            best, index = _argmin_tiles(residual_ptr, D, c_ptr, cn_ptr + level * K, rows, row_mask,
                                        N, K, D, BLOCK_N, BLOCK_K, BLOCK_D, PRECISION, WIDEN)
            tl.store(codes_ptr + level * N + rows, index.to(tl.int64), mask=row_mask)
            tl.debug_barrier()  # every dot of this level has read the residual
            for d0 in range(0, D, BLOCK_D):
                ds = d0 + tl.arange(0, BLOCK_D)
                mask = row_mask[:, None] & (ds < D)[None, :]
                offsets = rows[:, None] * D + ds[None, :]
                r = tl.load(residual_ptr + offsets, mask=mask, other=0.0)
                c = tl.load(c_ptr + index[:, None] * D + ds[None, :], mask=mask, other=0.0)
                # in float32, rounded once to the residual's dtype (exact for fp16 and float32;
                # the interpreter's own bfloat16 arithmetic works on raw bits)
                tl.store(residual_ptr + offsets, (r.to(tl.float32) - c.to(tl.float32)).to(r.dtype), mask=mask)
            tl.debug_barrier()  # the new residual is visible to the whole program

    def _configs():
        return [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
                for n, k, w, s in [(64, 64, 4, 2), (64, 128, 4, 2), (128, 64, 4, 2), (128, 128, 8, 2),
                                   (32, 128, 4, 2), (128, 256, 8, 2), (256, 64, 8, 2)]]

    # autotuned per (K, D, dtype); N is not in the key (and none of these changes a result)
    _nearest_tuned = triton.autotune(configs=_configs(), key=["K", "D"])(_nearest_kernel)
    _rvq_tuned = triton.autotune(configs=_configs(), key=["K", "D", "L"],
                                 restore_value=["residual_ptr"])(_rvq_kernel)


_INTERPRET_BLOCKS = {"BLOCK_N": 32, "BLOCK_K": 64}  # few, large tiles: the interpreter is slow per tile


def _precision(dtype: torch.dtype) -> str:
    # float32: exact products, no TF32. fp16/bf16 take tensor cores whatever this says.
    return "ieee"


def _widen(dtype: torch.dtype) -> bool:
    return interpreting() and dtype == torch.bfloat16


def _sq_norms(codebook: torch.Tensor) -> torch.Tensor:
    """||c||^2 in float32, computed once per call, the same for every row."""
    c = codebook.float()
    return (c * c).sum(dim=-1).contiguous()


def nearest(x: torch.Tensor, codebook: torch.Tensor, return_distances: bool = False):
    """x [N, D], codebook [K, D] contiguous, same dtype and device -> int64 [N] (and float32 [N])."""
    n, dim = x.shape
    k = codebook.shape[0]
    index = torch.zeros(n, dtype=torch.int64, device=x.device)
    best = torch.empty(n, dtype=torch.float32, device=x.device)
    if n:
        cn = _sq_norms(codebook)
        block_d, precision, widen = _block_d(dim), _precision(x.dtype), _widen(x.dtype)
        if interpreting():
            grid = (triton.cdiv(n, _INTERPRET_BLOCKS["BLOCK_N"]),)
            _nearest_kernel[grid](x, codebook, cn, index, best, n, k, dim, x.stride(0),
                                  BLOCK_D=block_d, PRECISION=precision, WIDEN=widen, **_INTERPRET_BLOCKS)
        else:
            grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
            _nearest_tuned[grid](x, codebook, cn, index, best, n, k, dim, x.stride(0),
                                 BLOCK_D=block_d, PRECISION=precision, WIDEN=widen)
    if not return_distances:
        return index
    xf = x.float()
    return index, best + (xf * xf).sum(dim=1)


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """x [N, D], codebooks [L, K, D] contiguous -> codes int64 [L, N]."""
    n, dim = x.shape
    levels, k, _ = codebooks.shape
    codes = torch.zeros(levels, n, dtype=torch.int64, device=x.device)
    if n and levels:
        residual = x.clone()
        cn = _sq_norms(codebooks)
        block_d, precision, widen = _block_d(dim), _precision(x.dtype), _widen(x.dtype)
        if interpreting():
            grid = (triton.cdiv(n, _INTERPRET_BLOCKS["BLOCK_N"]),)
            _rvq_kernel[grid](residual, codebooks, cn, codes, n, k, dim, levels,
                              BLOCK_D=block_d, PRECISION=precision, WIDEN=widen, **_INTERPRET_BLOCKS)
        else:
            grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
            _rvq_tuned[grid](residual, codebooks, cn, codes, n, k, dim, levels,
                             BLOCK_D=block_d, PRECISION=precision, WIDEN=widen)
    return codes
