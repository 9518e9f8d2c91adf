"""Block and register sizes of the CPU kernels, shared by the numba source (`numba_kernels`)
that compiles them and the runtime (`numba_cpu`) that lays codebooks out for them. Kept apart
so that the runtime never imports numba.

The SIMD width W is 16 floats where the CPU has AVX-512, else 8. Only the register blocking
depends on W: every dot is the same fma sequence either way.
"""
from __future__ import annotations


def _host_has_avx512() -> bool:
    try:
        import llvmlite.binding as llvm
        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # noqa: BLE001 - any doubt: the narrower vectors
        return False


W = 16 if _host_has_avx512() else 8
LOW_DIM = 16        # D <= LOW_DIM takes the rows-in-lanes path
ROW_BLOCK = 48      # general path: rows per block a thread claims (a multiple of ROWS)
CODE_TILE = 256     # general path: codes per distance tile
ROWS = 6            # general path: rows per micro-tile
COLS = 4 * W        # general path: codes per micro-tile (and per codebook panel)
LOW_SHAPES = {8: (2, 2), 16: (1, 4)}  # low-D width: (vectors of rows, codes per step); x fills 16 registers
LOW_ROWS = {width: vectors * W for width, (vectors, _) in LOW_SHAPES.items()}  # rows per low-D block
MAX_LOW_CODES = 1 << 24  # low-D indices ride in float lanes: exact below 2^24


def padded(k: int) -> int:
    """K rounded up to whole panels."""
    return (k + COLS - 1) // COLS * COLS


def width(dim: int, codes: int) -> int:
    """The path, by D (and K) alone, never by N: 0 (general) or the low-D width."""
    return 0 if dim > LOW_DIM or codes > MAX_LOW_CODES else 8 if dim <= 8 else 16


# C entry points of the compiled kernels: name -> (result, *arguments), in the terms numba
# (numba_kernels.build) and ctypes (numba_cpu) each translate. Pointers are to C-contiguous data.
ENTRY_POINTS = {
    "sq_norms": ("void", "f32*", "i64", "i64", "f32*"),                   # rows, n, d, out
    "all_finite": ("i32", "u32*", "i64"),                                 # bits, n
    "same_bits": ("i32", "u32*", "u32*", "i64"),                          # a, b, n
    "rvq_general": ("void", "f32*", "i64", "i64", "f32*", "i64", "i64",   # x, n, d, codebooks, levels, k,
                    "f32*", "i64", "f32*", "i64*", "f32*", "i64*",        # panels, kp, norms, codes, best_out, counter,
                    "f32*", "f32*", "i64*", "f32*"),                      # scratch: tile, best, index, residual
    "rvq_low8": ("void", "f32*", "i64", "i64", "f32*", "i64", "i64",      # x, n, d, codebooks, levels, k,
                 "f32*", "f32*", "i64*", "f32*", "i64*",                  # codes_p, norms, codes, best_out, counter,
                 "f32*", "f32*", "f32*"),                                 # scratch: best, index, xt
}
ENTRY_POINTS["rvq_low16"] = ENTRY_POINTS["rvq_low8"]
