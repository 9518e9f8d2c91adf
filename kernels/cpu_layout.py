"""Block and register sizes of the CPU kernels (a `Tiling`), chosen for the CPU they are compiled
for, and shared by the numba source (`numba_kernels`) that compiles them and the runtime
(`numba_cpu`) that lays codebooks out for them. Kept apart so that the runtime never imports
numba.

Every size here is a speed choice only: a (row, code) distance is the same fma chain over
d = 0..D-1 whatever the tiling, and the argmin keeps the lowest index on ties in any blocking,
so codes never depend on it (tests/test_kernels_fast.py builds each tiling `choose` can return
and compares).
"""
from __future__ import annotations

import os
from typing import NamedTuple


class Target(NamedTuple):
    """What the tiling is chosen from: the CPU numba compiles for and the host's cache sizes."""
    name: str
    features: frozenset  # enabled LLVM feature names ("avx512f", "fma", ...)
    l1d: int  # bytes per core
    l2: int   # bytes per core


class Tiling(NamedTuple):
    """The kernels' sizes.

    simd: W, floats per vector (16 with AVX-512, else 8). rows x vectors: the general path's
    register tile (rows of x by vectors of W codes, one accumulator each), cols = vectors * W
    codes per tile and per codebook panel (K is padded to a multiple). code_tile: codes per
    distance tile, a multiple of cols. row_block: rows per block a thread claims, a multiple of
    rows. low8, low16: the low-D path's (vectors of rows in lanes, codes per step) for D <= 8
    and D <= 16. parallel_work: multiply-adds below which a call stays on one thread."""
    simd: int
    rows: int
    vectors: int
    code_tile: int
    row_block: int
    low8: tuple
    low16: tuple
    parallel_work: int

    @property
    def cols(self) -> int:
        return self.vectors * self.simd

    def padded(self, k: int) -> int:
        """K rounded up to whole panels."""
        return (k + self.cols - 1) // self.cols * self.cols

    def low_shape(self, width: int) -> tuple:
        return self.low8 if width == 8 else self.low16

    def low_rows(self, width: int) -> int:
        """Rows per low-D block (rows in lanes)."""
        return self.low_shape(width)[0] * self.simd


LOW_DIM = 16        # D <= LOW_DIM takes the rows-in-lanes path
MAX_LOW_CODES = 1 << 24  # low-D indices ride in float lanes: exact below 2^24


def width(dim: int, codes: int) -> int:
    """The path, by D (and K) alone, never by N: 0 (general) or the low-D width."""
    return 0 if dim > LOW_DIM or codes > MAX_LOW_CODES else 8 if dim <= 8 else 16


# ---- the target ----------------------------------------------------------------------------------

def _cache_size(level: int, fallback: int) -> int:
    """Bytes of the level-`level` data cache of one core (sysfs, then sysconf)."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(root)):
            path = os.path.join(root, index)
            with open(os.path.join(path, "level")) as f:
                if int(f.read()) != level:
                    continue
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    try:
        size = os.sysconf("SC_LEVEL1_DCACHE_SIZE" if level == 1 else "SC_LEVEL2_CACHE_SIZE")
        if size > 0:
            return size
    except (OSError, ValueError):
        pass
    return fallback


def target() -> Target:
    """The CPU the kernels are compiled for: numba's own choice (NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES where set, else the host), and this host's cache sizes."""
    import llvmlite.binding as llvm

    name = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    flat = os.environ.get("NUMBA_CPU_FEATURES") or llvm.get_host_cpu_features().flatten()
    features = frozenset(f[1:] for f in flat.split(",") if f.startswith("+"))
    return Target(name, features, _cache_size(1, 32 << 10), _cache_size(2, 1 << 20))


# ---- the choice ----------------------------------------------------------------------------------

def choose(cpu: Target) -> Tiling:
    """The tiling for a target."""
    if "avx512f" in cpu.features:
        return Tiling(16, 6, 4, 256, 48, (2, 2), (1, 4), 1 << 22)
    return Tiling(8, 6, 4, 256, 48, (2, 2), (1, 4), 1 << 22)


# C entry points of the compiled kernels: name -> (result, *arguments), in the terms numba
# (numba_kernels.build) and ctypes (numba_cpu) each translate. Pointers are to C-contiguous data.
ENTRY_POINTS = {
    "sq_norms": ("void", "f32*", "i64", "i64", "f32*"),                   # rows, n, d, out
    "all_finite": ("i32", "u32*", "i64"),                                 # bits, n
    "same_bits": ("i32", "u32*", "u32*", "i64"),                          # a, b, n
    "rvq_general": ("void", "f32*", "i64", "i64", "f32*", "i64", "i64",   # x, n, d, codebooks, levels, k,
                    "f32*", "i64", "f32*", "i64*", "f32*", "i64*",        # panels, kp, norms, codes, best_out, counter,
                    "f32*", "i64*", "f32*"),                              # scratch: best, index, residual
    "rvq_low8": ("void", "f32*", "i64", "i64", "f32*", "i64", "i64",      # x, n, d, codebooks, levels, k,
                 "f32*", "f32*", "i64*", "f32*", "i64*",                  # codes_p, norms, codes, best_out, counter,
                 "f32*", "f32*", "f32*"),                                 # scratch: best, index, xt
}
ENTRY_POINTS["rvq_low16"] = ENTRY_POINTS["rvq_low8"]
