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
    l2: int  # bytes per core


class Tiling(NamedTuple):
    """The kernels' sizes: the first six are compiled in, the last two are read at each call.

    simd: W, floats per vector. rows x vectors: the general path's register tile (rows of x by
    vectors of W codes, one accumulator each); cols = vectors * W codes per tile and per
    codebook panel (K is padded to a multiple). row_block: rows per block a thread claims, a
    multiple of rows. low8, low16: the low-D path's (vectors of rows in lanes, codes per step)
    for D <= 8 and D <= 16. tile_bytes: codebook bytes a block sweeps per tile (its rows re-read
    them from cache). parallel_work: multiply-adds below which a call stays on one thread."""
    simd: int
    rows: int
    vectors: int
    row_block: int
    low8: tuple
    low16: tuple
    tile_bytes: int
    parallel_work: int

    @property
    def compiled(self) -> tuple:
        """The sizes compiled into the kernels (what their object code depends on)."""
        return tuple(self[:6])

    @property
    def cols(self) -> int:
        return self.vectors * self.simd

    def padded(self, k: int) -> int:
        """K rounded up to whole panels."""
        return (k + self.cols - 1) // self.cols * self.cols

    def tile_panels(self, dim: int) -> int:
        """Panels per codebook tile at dimension D: as many as tile_bytes holds, at least one."""
        return max(1, self.tile_bytes // (4 * dim * self.cols))

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
        size = os.sysconf(f"SC_LEVEL{level}_CACHE_SIZE")
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
    flat = os.environ.get("NUMBA_CPU_FEATURES")
    if flat is None:
        try:
            flat = llvm.get_host_cpu_features().flatten()
        except RuntimeError:  # features unknown: the narrower vectors (W = 8) and register tile
            flat = ""
    features = frozenset(f[1:] for f in flat.split(",") if f.startswith("+"))
    return Target(name, features, _cache_size(2, 1 << 20))


# ---- the choice ----------------------------------------------------------------------------------

def register_tile(registers: int) -> tuple:
    """(rows, vectors) of the general path's micro-tile for a register file: the most
    multiply-adds per load (rows * vectors per rows + vectors loads) whose rows x vectors
    accumulators, `vectors` code vectors and one broadcast fit in the registers (a tile that
    spills runs at half speed or less), vectors a power of two so that cols divides the usual
    power-of-two K. 32 registers (AVX-512): 6 x 4; 16 (AVX2): 6 x 2."""
    fits = [(rows, vectors) for vectors in (1, 2, 4, 8) for rows in range(1, registers)
            if rows * vectors + vectors + 1 <= registers]
    return max(fits, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), t[0] * t[1]))


def choose(cpu: Target) -> Tiling:
    """The tiling for a target, from its vector registers (AVX-512: 32 of 16 floats, else 16 of
    8) and its L2. Measured on Zen 4 (benchmarks/README.md, "Nearest-codebook kernels"): the
    6 x 4W tile needs 29 of AVX-512's registers and spills with AVX2's 16 (61 GFLOP/s there
    against 99 for 6 x 2); the low-D path keeps a block's coordinates in registers where they
    fit (AVX-512) and otherwise gains from two vectors of rows per code broadcast. A codebook
    tile of a quarter of L2 leaves room for the block's rows and the next tile's prefetch; the
    speed was flat from 128 to 1024 codes at D = 128 on Zen 4's 1 MiB, and a fixed count would
    outgrow L2 at large D. A call stays on one thread below ~50 us of work at the vector
    width's rate."""
    wide = "avx512f" in cpu.features
    simd, registers = (16, 32) if wide else (8, 16)
    rows, vectors = register_tile(registers)
    low16 = (1, 4) if wide else (2, 2)
    return Tiling(simd, rows, vectors, 8 * rows, (2, 2), low16, max(cpu.l2 // 4, 16 << 10), (1 << 22) * simd // 16)


# C entry points of the compiled kernels: name -> (result, *arguments), in the terms numba
# (numba_kernels.build) and ctypes (numba_cpu) each translate. Pointers are to C-contiguous data.
ENTRY_POINTS = {
    "sq_norms": ("void", "f32*", "i64", "i64", "f32*"),                   # rows, n, d, out
    "all_finite": ("i32", "u32*", "i64"),                                 # bits, n
    "same_bits": ("i32", "u32*", "u32*", "i64"),                          # a, b, n
    "rvq_general": ("void", "f32*", "i64", "i64", "f32*", "i64", "i64",   # x, n, d, codebooks, levels, k,
                    "f32*", "i64", "i64", "f32*", "i64*", "f32*", "i64*", # panels, kp, tile_panels, norms, codes,
                                                                          # best_out, counter,
                    "f32*", "i64*", "f32*"),                              # scratch: best, index, residual
    "rvq_low8": ("void", "f32*", "i64", "i64", "f32*", "i64", "i64",      # x, n, d, codebooks, levels, k,
                 "f32*", "f32*", "i64*", "f32*", "i64*",                  # codes_p, norms, codes, best_out, counter,
                 "f32*", "f32*", "f32*"),                                 # scratch: best, index, xt
}
ENTRY_POINTS["rvq_low16"] = ENTRY_POINTS["rvq_low8"]
