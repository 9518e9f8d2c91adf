"""Nearest-codebook search and residual quantisation on the CPU, compiled with numba.

Every distance is `||c||^2 - 2 x.c` in float32, with x.c and ||c||^2 accumulated over the
dimensions in order 0..D-1 by fused multiply-adds (`llvm.fma`, one rounding each), and the
distance rounded once from the exact `||c||^2 - 2 x.c` (as `||c||^2 - (x.c + x.c)`, or as
`fma(-2, x.c, ||c||^2)`: the same value). Each (row, code) distance is therefore a fixed sequence
of IEEE operations on that row and that code alone: it does not depend on N, on the other rows,
on block sizes, on vector width or on the number of threads. The argmin keeps the lowest index
on ties, as `torch.argmin` does. Together these give the invariant the codec relies on: a row's
code is the same whether the file is encoded whole, in windows, or on 1 or 2 threads.

Two layouts, chosen by D alone (never by N):
- D > 16: rows are parallel (`prange` over blocks of 48 rows). A block sweeps the codebook,
  held transposed ([D, K], K padded to the tile width), in cache-sized tiles of 256 codes; a
  micro-kernel computes 6 rows x 4W codes (W = SIMD width: 16 floats with AVX-512, else 8)
  with its 24 accumulators in vector registers for all of D, then each row's tile minimum is
  taken with SIMD and only when it beats the row's best is its first index looked up.
- D <= 16 (factorised / low-dim codes): rows in SIMD lanes (2W rows for D <= 8, W for D <= 16),
  D padded to 8 or 16, so that the block's coordinates and its running (best, index) stay in
  vector registers while the codes stream past, 2 or 4 codes per step.

Both are written with explicit <W x float> vectors (`_vload`, `_vfma`, ...: numba intrinsics
over LLVM vector types) rather than left to the auto-vectoriser, which vectorised the same
loops on some builds and not on others.

`rvq_encode` does all levels for one block of rows before moving on, the residual staying in
that block's buffer. Compiled code is cached on disk (`cache=True`); see `_choose_cache_dir`.
"""
from __future__ import annotations

import os
import stat
import tempfile
import threading

import numpy as np


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _private_tmp_cache() -> str:
    """A cache directory under the temp dir that only this user can write (numba's cache
    files are pickles: a directory someone else could plant files in must not be used)."""
    path = os.path.join(tempfile.gettempdir(), f"rvqtool-numba-cache-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="rvqtool-numba-cache-")


def _choose_cache_dir() -> None:
    """numba caches next to this file (`__pycache__/`), else in the user cache dir
    (~/.cache/numba), and raises at import when neither is writable (a read-only install
    with a read-only or missing home). Only in that last case point it at a private temp dir."""
    import numba
    from numba.misc.appdirs import AppDirs

    if numba.config.CACHE_DIR:  # the user chose (NUMBA_CACHE_DIR)
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    if _writable_dir(here) or _writable_dir(AppDirs(appname="numba", appauthor=False).user_cache_dir):
        return
    numba.config.CACHE_DIR = _private_tmp_cache()


_choose_cache_dir()

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402
from numba.core import cgutils, types  # noqa: E402
from numba.extending import intrinsic, models, register_model  # noqa: E402
from llvmlite import ir  # noqa: E402

LOW_DIM = 16       # D <= LOW_DIM takes the rows-in-lanes path
_ROW_BLOCK = 48    # general path: rows per parallel task (a multiple of _ROWS)
_CODE_TILE = 256   # general path: codes per distance tile
_INF = np.float32(np.inf)


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma), so that no compiler flag can change it."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def _minimum(typingctx, a, b):
    """llvm.minimum: exact, associative and commutative, so a SIMD reduction of it is too."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        kind = args[0].type
        fn = builder.module.declare_intrinsic("llvm.minimum", [kind], ir.FunctionType(kind, [kind, kind]))
        return builder.call(fn, args)

    return a(a, b), codegen


# ---- shared pieces --------------------------------------------------------------------------

@njit(cache=True, fastmath=False)
def _sq_norms(rows):
    """||row||^2 of each row of [M, D], accumulated over d in order."""
    out = np.empty(rows.shape[0], np.float32)
    for i in range(rows.shape[0]):
        s = np.float32(0.0)
        for d in range(rows.shape[1]):
            s = _fma(rows[i, d], rows[i, d], s)
        out[i] = s
    return out


@njit(cache=True, fastmath=False)
def _pad_columns(codebook, width):
    out = np.zeros((codebook.shape[0], width), np.float32)
    out[:, :codebook.shape[1]] = codebook
    return out


# ---- explicit SIMD vectors ---------------------------------------------------------------------
# <W x float> values that numba keeps in registers; W = 16 where the CPU has AVX-512, else 8.
# Only the register blocking depends on W: every dot is the same fma sequence either way.

def _host_has_avx512() -> bool:
    try:
        import llvmlite.binding as llvm
        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # noqa: BLE001 - any doubt: the narrower vectors
        return False


_W = 16 if _host_has_avx512() else 8
_VEC = ir.VectorType(ir.FloatType(), _W)


class _Vector(types.Type):
    def __init__(self):
        super().__init__(name=f"float32x{_W}")


_vector = _Vector()


@register_model(_Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _element_pointer(context, builder, aryty, array, i, j):
    ary = context.make_array(aryty)(context, builder, array)
    return builder.bitcast(cgutils.get_item_pointer(context, builder, aryty, ary, [i, j]), _VEC.as_pointer())


@intrinsic
def _vload(typingctx, array, i, j):
    """The W floats array[i, j:j + W] (a C-contiguous float32 2-D array, no bounds check)."""
    if not (isinstance(array, types.Array) and array.dtype == types.float32 and array.ndim == 2 and array.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_element_pointer(context, builder, signature.args[0], *args), align=4)

    return _vector(array, i, j), codegen


@intrinsic
def _vstore(typingctx, array, i, j, value):
    """array[i, j:j + W] = value."""
    if not (isinstance(array, types.Array) and array.dtype == types.float32 and array.ndim == 2
            and array.layout == "C" and value == _vector):
        return None

    def codegen(context, builder, signature, args):
        builder.store(args[3], _element_pointer(context, builder, signature.args[0], *args[:3]), align=4)
        return context.get_dummy_value()

    return types.none(array, i, j, value), codegen


@intrinsic
def _vsplat(typingctx, scalar):
    if scalar != types.float32:
        return None

    def codegen(context, builder, signature, args):
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), _W), [0] * _W))

    return _vector(scalar), codegen


@intrinsic
def _vfma(typingctx, a, b, c):
    """a * b + c lane by lane, one rounding (llvm.fma)."""
    if not (a == b == c == _vector):
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), f"llvm.fma.v{_W}f32")
        return builder.call(fn, args)

    return _vector(a, b, c), codegen


@intrinsic
def _vselect_lt(typingctx, a, b, p, q):
    """Lane by lane: p where a < b, else q."""
    if not (a == b == p == q == _vector):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered("<", args[0], args[1]), args[2], args[3])

    return _vector(a, b, p, q), codegen


# ---- general path (D > LOW_DIM): codes in lanes, six rows at a time --------------------------

_ROWS = 6           # rows per micro-tile
_COLS = 4 * _W      # codes per micro-tile


@njit(cache=True, fastmath=False)
def _micro_tile(xb, r, code_t, k0, tile):
    """tile[q, j] = x[r+q] . c[k0+j] for q < 6, j < 4 W: 24 vector accumulators in registers,
    each summed over d in order 0..D-1 by fma."""
    zero = _vsplat(np.float32(0.0))
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = a40 = a41 = a42 = a43 = a50 = a51 = a52 = a53 = zero
    for d in range(xb.shape[1]):
        c0, c1, c2, c3 = _vload(code_t, d, k0), _vload(code_t, d, k0 + _W), _vload(code_t, d, k0 + 2 * _W), _vload(code_t, d, k0 + 3 * _W)
        s = _vsplat(xb[r + 0, d])
        a00, a01, a02, a03 = _vfma(s, c0, a00), _vfma(s, c1, a01), _vfma(s, c2, a02), _vfma(s, c3, a03)
        s = _vsplat(xb[r + 1, d])
        a10, a11, a12, a13 = _vfma(s, c0, a10), _vfma(s, c1, a11), _vfma(s, c2, a12), _vfma(s, c3, a13)
        s = _vsplat(xb[r + 2, d])
        a20, a21, a22, a23 = _vfma(s, c0, a20), _vfma(s, c1, a21), _vfma(s, c2, a22), _vfma(s, c3, a23)
        s = _vsplat(xb[r + 3, d])
        a30, a31, a32, a33 = _vfma(s, c0, a30), _vfma(s, c1, a31), _vfma(s, c2, a32), _vfma(s, c3, a33)
        s = _vsplat(xb[r + 4, d])
        a40, a41, a42, a43 = _vfma(s, c0, a40), _vfma(s, c1, a41), _vfma(s, c2, a42), _vfma(s, c3, a43)
        s = _vsplat(xb[r + 5, d])
        a50, a51, a52, a53 = _vfma(s, c0, a50), _vfma(s, c1, a51), _vfma(s, c2, a52), _vfma(s, c3, a53)
    _vstore(tile, 0, 0, a00); _vstore(tile, 0, _W, a01); _vstore(tile, 0, 2 * _W, a02); _vstore(tile, 0, 3 * _W, a03)
    _vstore(tile, 1, 0, a10); _vstore(tile, 1, _W, a11); _vstore(tile, 1, 2 * _W, a12); _vstore(tile, 1, 3 * _W, a13)
    _vstore(tile, 2, 0, a20); _vstore(tile, 2, _W, a21); _vstore(tile, 2, 2 * _W, a22); _vstore(tile, 2, 3 * _W, a23)
    _vstore(tile, 3, 0, a30); _vstore(tile, 3, _W, a31); _vstore(tile, 3, 2 * _W, a32); _vstore(tile, 3, 3 * _W, a33)
    _vstore(tile, 4, 0, a40); _vstore(tile, 4, _W, a41); _vstore(tile, 4, 2 * _W, a42); _vstore(tile, 4, 3 * _W, a43)
    _vstore(tile, 5, 0, a50); _vstore(tile, 5, _W, a51); _vstore(tile, 5, 2 * _W, a52); _vstore(tile, 5, 3 * _W, a53)


@njit(cache=True, fastmath=False, inline="always")
def _fold(acc, cn, k0, kt, best, index, i):
    """Fold the tile of dots acc[:kt] (codes k0..k0+kt) into row i's (best, index).

    The tile's minimum distance is exact in any order (llvm.minimum is associative and
    commutative), so it is taken with SIMD; only when it beats the row's best is the first
    code attaining it looked up, recomputing the same distances: the lowest index wins."""
    norms = cn[k0:k0 + kt]
    m = _INF
    for j in range(kt):
        m = _minimum(m, norms[j] - (acc[j] + acc[j]))
    if m < best[i]:
        for j in range(kt):
            if norms[j] - (acc[j] + acc[j]) == m:
                best[i] = m
                index[i] = k0 + j
                break


@njit(cache=True, fastmath=False)
def _block_general(xb, nrows, code_t, cn, best, index, tile):
    """Nearest code for rows [0, nrows) of the block xb (rows padded to a multiple of _ROWS):
    best distance (without ||x||^2) and index. code_t [D, Kp] and cn [Kp] are padded to a
    multiple of _COLS with zero codes of norm +inf, which never win."""
    kp = code_t.shape[1]
    for i in range(nrows):
        best[i] = _INF
        index[i] = 0
    for k0 in range(0, kp, _CODE_TILE):
        for r in range(0, nrows, _ROWS):
            for j0 in range(k0, min(k0 + _CODE_TILE, kp), _COLS):
                _micro_tile(xb, r, code_t, j0, tile)
                for q in range(min(_ROWS, nrows - r)):
                    _fold(tile[q], cn, j0, _COLS, best, index, r + q)


def _prepare_general(codebook: np.ndarray, code_t: np.ndarray, cn: np.ndarray) -> None:
    """Fill code_t [D, Kp] with the codebook transposed and cn [Kp] with its norms; the padding
    codes (K..Kp, Kp a multiple of _COLS) are zero with norm +inf, so they never win."""
    k = len(codebook)
    code_t[:, :k] = codebook.T
    code_t[:, k:] = 0.0
    cn[:k] = _sq_norms(codebook)
    cn[k:] = np.inf


def _padded(k: int) -> int:
    return (k + _COLS - 1) // _COLS * _COLS


def _make_general(parallel: bool):
    # numba keys its disk cache on the function's code and closure values, not on its flags:
    # each kernel names `parallel` in its body so that the serial build (for forked children,
    # where GNU OpenMP must not be entered) and the parallel one are cached apart.
    @njit(parallel=parallel, cache=True, fastmath=False, nogil=True)
    def nearest_general(x, code_t, cn, index, best):
        assert parallel == parallel  # `parallel` in the closure: see above
        n, dim = x.shape
        for b in prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
            start = b * _ROW_BLOCK
            rows = min(_ROW_BLOCK, n - start)
            xb = np.zeros((_ROW_BLOCK, dim), np.float32)
            xb[:rows] = x[start:start + rows]
            tile = np.empty((_ROWS, _COLS), np.float32)
            _block_general(xb, rows, code_t, cn, best[start:start + rows], index[start:start + rows], tile)

    @njit(parallel=parallel, cache=True, fastmath=False, nogil=True)
    def rvq_general(x, codebooks, codes_t, cns, codes):
        assert parallel == parallel  # `parallel` in the closure: see above
        n, dim = x.shape
        levels = codebooks.shape[0]
        for b in prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
            start = b * _ROW_BLOCK
            rows = min(_ROW_BLOCK, n - start)
            residual = np.zeros((_ROW_BLOCK, dim), np.float32)
            residual[:rows] = x[start:start + rows]
            best = np.empty(rows, np.float32)
            index = np.empty(rows, np.int64)
            tile = np.empty((_ROWS, _COLS), np.float32)
            for level in range(levels):
                _block_general(residual, rows, codes_t[level], cns[level], best, index, tile)
                for i in range(rows):
                    codes[level, start + i] = index[i]
                    chosen = codebooks[level, index[i]]
                    for d in range(dim):
                        residual[i, d] = residual[i, d] - chosen[d]

    return nearest_general, rvq_general


# ---- low-D path (D <= LOW_DIM): rows in lanes, D padded to a compile-time width -------------
# Padding adds fma(0, 0, s) = s (at most turning -0 into +0, which no comparison sees), so a
# row's distances are those of its D true dimensions. A code's distance is fma(-2, x.c, ||c||^2),
# the same value as ||c||^2 - (x.c + x.c). Indices ride in float lanes (exact below 2^24 codes).

_LOW_ROWS = {8: 2 * _W, 16: _W}   # rows per block: the coordinates fill 16 vector registers
_MAX_LOW_CODES = 1 << 24

@njit(cache=True, fastmath=False)
def _low_block_8(xt, code_p, cn, best, index):
    """Rows in lanes, D padded to 8: 2 vector(s) of rows (2 x W rows) against every code,
    2 codes per step; coordinates, best distances and indices stay in registers."""
    zero = _vsplat(np.float32(0.0))
    minus_two = _vsplat(np.float32(-2.0))
    x0_0, x1_0, x2_0, x3_0, x4_0, x5_0, x6_0, x7_0 = _vload(xt, 0, 0 * _W), _vload(xt, 1, 0 * _W), _vload(xt, 2, 0 * _W), _vload(xt, 3, 0 * _W), _vload(xt, 4, 0 * _W), _vload(xt, 5, 0 * _W), _vload(xt, 6, 0 * _W), _vload(xt, 7, 0 * _W)
    x0_1, x1_1, x2_1, x3_1, x4_1, x5_1, x6_1, x7_1 = _vload(xt, 0, 1 * _W), _vload(xt, 1, 1 * _W), _vload(xt, 2, 1 * _W), _vload(xt, 3, 1 * _W), _vload(xt, 4, 1 * _W), _vload(xt, 5, 1 * _W), _vload(xt, 6, 1 * _W), _vload(xt, 7, 1 * _W)
    b0, b1 = _vsplat(_INF), _vsplat(_INF)
    i0, i1 = zero, zero
    k = 0
    while k + 2 <= code_p.shape[0]:
        s0_0 = s0_1 = zero
        s1_0 = s1_1 = zero
        c = _vsplat(code_p[k + 0, 0])
        s0_0, s0_1 = _vfma(x0_0, c, s0_0), _vfma(x0_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 0])
        s1_0, s1_1 = _vfma(x0_0, c, s1_0), _vfma(x0_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 1])
        s0_0, s0_1 = _vfma(x1_0, c, s0_0), _vfma(x1_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 1])
        s1_0, s1_1 = _vfma(x1_0, c, s1_0), _vfma(x1_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 2])
        s0_0, s0_1 = _vfma(x2_0, c, s0_0), _vfma(x2_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 2])
        s1_0, s1_1 = _vfma(x2_0, c, s1_0), _vfma(x2_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 3])
        s0_0, s0_1 = _vfma(x3_0, c, s0_0), _vfma(x3_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 3])
        s1_0, s1_1 = _vfma(x3_0, c, s1_0), _vfma(x3_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 4])
        s0_0, s0_1 = _vfma(x4_0, c, s0_0), _vfma(x4_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 4])
        s1_0, s1_1 = _vfma(x4_0, c, s1_0), _vfma(x4_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 5])
        s0_0, s0_1 = _vfma(x5_0, c, s0_0), _vfma(x5_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 5])
        s1_0, s1_1 = _vfma(x5_0, c, s1_0), _vfma(x5_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 6])
        s0_0, s0_1 = _vfma(x6_0, c, s0_0), _vfma(x6_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 6])
        s1_0, s1_1 = _vfma(x6_0, c, s1_0), _vfma(x6_1, c, s1_1)
        c = _vsplat(code_p[k + 0, 7])
        s0_0, s0_1 = _vfma(x7_0, c, s0_0), _vfma(x7_1, c, s0_1)
        c = _vsplat(code_p[k + 1, 7])
        s1_0, s1_1 = _vfma(x7_0, c, s1_0), _vfma(x7_1, c, s1_1)
        norm, kf = _vsplat(cn[k + 0]), _vsplat(np.float32(k + 0))
        dist = _vfma(minus_two, s0_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        dist = _vfma(minus_two, s0_1, norm)
        i1 = _vselect_lt(dist, b1, kf, i1)
        b1 = _vselect_lt(dist, b1, dist, b1)
        norm, kf = _vsplat(cn[k + 1]), _vsplat(np.float32(k + 1))
        dist = _vfma(minus_two, s1_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        dist = _vfma(minus_two, s1_1, norm)
        i1 = _vselect_lt(dist, b1, kf, i1)
        b1 = _vselect_lt(dist, b1, dist, b1)
        k += 2
    while k < code_p.shape[0]:
        s0_0 = s0_1 = zero
        c = _vsplat(code_p[k + 0, 0])
        s0_0, s0_1 = _vfma(x0_0, c, s0_0), _vfma(x0_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 1])
        s0_0, s0_1 = _vfma(x1_0, c, s0_0), _vfma(x1_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 2])
        s0_0, s0_1 = _vfma(x2_0, c, s0_0), _vfma(x2_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 3])
        s0_0, s0_1 = _vfma(x3_0, c, s0_0), _vfma(x3_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 4])
        s0_0, s0_1 = _vfma(x4_0, c, s0_0), _vfma(x4_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 5])
        s0_0, s0_1 = _vfma(x5_0, c, s0_0), _vfma(x5_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 6])
        s0_0, s0_1 = _vfma(x6_0, c, s0_0), _vfma(x6_1, c, s0_1)
        c = _vsplat(code_p[k + 0, 7])
        s0_0, s0_1 = _vfma(x7_0, c, s0_0), _vfma(x7_1, c, s0_1)
        norm, kf = _vsplat(cn[k + 0]), _vsplat(np.float32(k + 0))
        dist = _vfma(minus_two, s0_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        dist = _vfma(minus_two, s0_1, norm)
        i1 = _vselect_lt(dist, b1, kf, i1)
        b1 = _vselect_lt(dist, b1, dist, b1)
        k += 1
    _vstore(best, 0, 0 * _W, b0)
    _vstore(index, 0, 0 * _W, i0)
    _vstore(best, 0, 1 * _W, b1)
    _vstore(index, 0, 1 * _W, i1)


@njit(cache=True, fastmath=False)
def _low_block_16(xt, code_p, cn, best, index):
    """Rows in lanes, D padded to 16: 1 vector(s) of rows (1 x W rows) against every code,
    4 codes per step; coordinates, best distances and indices stay in registers."""
    zero = _vsplat(np.float32(0.0))
    minus_two = _vsplat(np.float32(-2.0))
    x0_0, x1_0, x2_0, x3_0, x4_0, x5_0, x6_0, x7_0, x8_0, x9_0, x10_0, x11_0, x12_0, x13_0, x14_0, x15_0 = _vload(xt, 0, 0 * _W), _vload(xt, 1, 0 * _W), _vload(xt, 2, 0 * _W), _vload(xt, 3, 0 * _W), _vload(xt, 4, 0 * _W), _vload(xt, 5, 0 * _W), _vload(xt, 6, 0 * _W), _vload(xt, 7, 0 * _W), _vload(xt, 8, 0 * _W), _vload(xt, 9, 0 * _W), _vload(xt, 10, 0 * _W), _vload(xt, 11, 0 * _W), _vload(xt, 12, 0 * _W), _vload(xt, 13, 0 * _W), _vload(xt, 14, 0 * _W), _vload(xt, 15, 0 * _W)
    b0 = _vsplat(_INF)
    i0 = zero
    k = 0
    while k + 4 <= code_p.shape[0]:
        s0_0 = zero
        s1_0 = zero
        s2_0 = zero
        s3_0 = zero
        c = _vsplat(code_p[k + 0, 0])
        s0_0 = _vfma(x0_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 0])
        s1_0 = _vfma(x0_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 0])
        s2_0 = _vfma(x0_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 0])
        s3_0 = _vfma(x0_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 1])
        s0_0 = _vfma(x1_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 1])
        s1_0 = _vfma(x1_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 1])
        s2_0 = _vfma(x1_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 1])
        s3_0 = _vfma(x1_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 2])
        s0_0 = _vfma(x2_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 2])
        s1_0 = _vfma(x2_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 2])
        s2_0 = _vfma(x2_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 2])
        s3_0 = _vfma(x2_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 3])
        s0_0 = _vfma(x3_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 3])
        s1_0 = _vfma(x3_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 3])
        s2_0 = _vfma(x3_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 3])
        s3_0 = _vfma(x3_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 4])
        s0_0 = _vfma(x4_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 4])
        s1_0 = _vfma(x4_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 4])
        s2_0 = _vfma(x4_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 4])
        s3_0 = _vfma(x4_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 5])
        s0_0 = _vfma(x5_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 5])
        s1_0 = _vfma(x5_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 5])
        s2_0 = _vfma(x5_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 5])
        s3_0 = _vfma(x5_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 6])
        s0_0 = _vfma(x6_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 6])
        s1_0 = _vfma(x6_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 6])
        s2_0 = _vfma(x6_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 6])
        s3_0 = _vfma(x6_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 7])
        s0_0 = _vfma(x7_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 7])
        s1_0 = _vfma(x7_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 7])
        s2_0 = _vfma(x7_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 7])
        s3_0 = _vfma(x7_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 8])
        s0_0 = _vfma(x8_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 8])
        s1_0 = _vfma(x8_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 8])
        s2_0 = _vfma(x8_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 8])
        s3_0 = _vfma(x8_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 9])
        s0_0 = _vfma(x9_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 9])
        s1_0 = _vfma(x9_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 9])
        s2_0 = _vfma(x9_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 9])
        s3_0 = _vfma(x9_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 10])
        s0_0 = _vfma(x10_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 10])
        s1_0 = _vfma(x10_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 10])
        s2_0 = _vfma(x10_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 10])
        s3_0 = _vfma(x10_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 11])
        s0_0 = _vfma(x11_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 11])
        s1_0 = _vfma(x11_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 11])
        s2_0 = _vfma(x11_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 11])
        s3_0 = _vfma(x11_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 12])
        s0_0 = _vfma(x12_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 12])
        s1_0 = _vfma(x12_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 12])
        s2_0 = _vfma(x12_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 12])
        s3_0 = _vfma(x12_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 13])
        s0_0 = _vfma(x13_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 13])
        s1_0 = _vfma(x13_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 13])
        s2_0 = _vfma(x13_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 13])
        s3_0 = _vfma(x13_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 14])
        s0_0 = _vfma(x14_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 14])
        s1_0 = _vfma(x14_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 14])
        s2_0 = _vfma(x14_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 14])
        s3_0 = _vfma(x14_0, c, s3_0)
        c = _vsplat(code_p[k + 0, 15])
        s0_0 = _vfma(x15_0, c, s0_0)
        c = _vsplat(code_p[k + 1, 15])
        s1_0 = _vfma(x15_0, c, s1_0)
        c = _vsplat(code_p[k + 2, 15])
        s2_0 = _vfma(x15_0, c, s2_0)
        c = _vsplat(code_p[k + 3, 15])
        s3_0 = _vfma(x15_0, c, s3_0)
        norm, kf = _vsplat(cn[k + 0]), _vsplat(np.float32(k + 0))
        dist = _vfma(minus_two, s0_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        norm, kf = _vsplat(cn[k + 1]), _vsplat(np.float32(k + 1))
        dist = _vfma(minus_two, s1_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        norm, kf = _vsplat(cn[k + 2]), _vsplat(np.float32(k + 2))
        dist = _vfma(minus_two, s2_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        norm, kf = _vsplat(cn[k + 3]), _vsplat(np.float32(k + 3))
        dist = _vfma(minus_two, s3_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        k += 4
    while k < code_p.shape[0]:
        s0_0 = zero
        c = _vsplat(code_p[k + 0, 0])
        s0_0 = _vfma(x0_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 1])
        s0_0 = _vfma(x1_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 2])
        s0_0 = _vfma(x2_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 3])
        s0_0 = _vfma(x3_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 4])
        s0_0 = _vfma(x4_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 5])
        s0_0 = _vfma(x5_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 6])
        s0_0 = _vfma(x6_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 7])
        s0_0 = _vfma(x7_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 8])
        s0_0 = _vfma(x8_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 9])
        s0_0 = _vfma(x9_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 10])
        s0_0 = _vfma(x10_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 11])
        s0_0 = _vfma(x11_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 12])
        s0_0 = _vfma(x12_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 13])
        s0_0 = _vfma(x13_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 14])
        s0_0 = _vfma(x14_0, c, s0_0)
        c = _vsplat(code_p[k + 0, 15])
        s0_0 = _vfma(x15_0, c, s0_0)
        norm, kf = _vsplat(cn[k + 0]), _vsplat(np.float32(k + 0))
        dist = _vfma(minus_two, s0_0, norm)
        i0 = _vselect_lt(dist, b0, kf, i0)
        b0 = _vselect_lt(dist, b0, dist, b0)
        k += 1
    _vstore(best, 0, 0 * _W, b0)
    _vstore(index, 0, 0 * _W, i0)


def _make_low_dim(width: int, parallel: bool):
    lanes = _LOW_ROWS[width]

    @njit(parallel=parallel, cache=True, fastmath=False, nogil=True)
    def nearest_low(x, code_p, cn, index, best_out):
        assert parallel == parallel  # `parallel` in the closure: see _make_general
        n, dim = x.shape
        for b in prange((n + lanes - 1) // lanes):
            start = b * lanes
            rows = min(lanes, n - start)
            xt = np.zeros((width, lanes), np.float32)
            for i in range(rows):
                for d in range(dim):
                    xt[d, i] = x[start + i, d]
            best = np.empty((1, lanes), np.float32)
            idx = np.empty((1, lanes), np.float32)
            if width == 8:  # a closure constant: numba prunes the other branch
                _low_block_8(xt, code_p, cn, best, idx)
            else:
                _low_block_16(xt, code_p, cn, best, idx)
            for i in range(rows):
                index[start + i] = np.int64(idx[0, i])
                best_out[start + i] = best[0, i]

    @njit(parallel=parallel, cache=True, fastmath=False, nogil=True)
    def rvq_low(x, codebooks, codes_p, cns, codes):
        assert parallel == parallel  # `parallel` in the closure: see _make_general
        n, dim = x.shape
        levels = codebooks.shape[0]
        for b in prange((n + lanes - 1) // lanes):
            start = b * lanes
            rows = min(lanes, n - start)
            xt = np.zeros((width, lanes), np.float32)  # the residual, transposed
            for i in range(rows):
                for d in range(dim):
                    xt[d, i] = x[start + i, d]
            best = np.empty((1, lanes), np.float32)
            idx = np.empty((1, lanes), np.float32)
            for level in range(levels):
                if width == 8:
                    _low_block_8(xt, codes_p[level], cns[level], best, idx)
                else:
                    _low_block_16(xt, codes_p[level], cns[level], best, idx)
                for i in range(rows):
                    chosen = np.int64(idx[0, i])
                    codes[level, start + i] = chosen
                    for d in range(dim):
                        xt[d, i] = xt[d, i] - codebooks[level, chosen, d]

    return nearest_low, rvq_low


# numba keys compiled code on the function's closure values, so each (width, parallel) pair is
# compiled and cached on its own, on first use.
_built: dict = {}


def _kernels(dim: int, codes: int, parallel: bool):
    width = 0 if dim > LOW_DIM or codes > _MAX_LOW_CODES else 8 if dim <= 8 else 16
    key = (width, parallel)
    if key not in _built:
        _built[key] = _make_general(parallel) if width == 0 else _make_low_dim(width, parallel)
    return width, _built[key]


# Threading layer. numba's default here is OpenMP (the system libgomp), whose idle workers spin:
# on a 2-core machine they took the cores from torch's own OpenMP pool (torch ships another
# libgomp), and every torch op after a kernel call paid ~40 ms. The workqueue layer has no
# spinning and survives fork, but must not be entered by two threads at once: calls hold
# _LAUNCH. NUMBA_THREADING_LAYER, when set, is respected; a layer another library launched
# first stays.
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()


def _new_launch_lock() -> None:  # a fork taken while another thread held the lock
    global _LAUNCH
    _LAUNCH = threading.Lock()


os.register_at_fork(after_in_child=_new_launch_lock)
_parallel_pid: int | None = None  # the process that started numba's thread pool


def _parallel_allowed() -> bool:
    """A forked child must not enter a GNU OpenMP parallel region once its parent has (numba
    kills it: "fork() called from a process already using GNU OpenMP"). Under that layer such
    a child gets the serial build, whose arithmetic, and so whose codes, are the same."""
    global _parallel_pid
    if _parallel_pid is None:
        _parallel_pid = os.getpid()
    if os.getpid() == _parallel_pid:
        return True
    try:
        return numba.threading_layer() != "omp"
    except ValueError:  # no pool was started before the fork
        return True


def _with_threads(threads: int | None):
    limit = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(limit, threads or limit)))


# ---- entry points (numpy in, numpy out; validation is the dispatcher's job) -----------------

def nearest(x: np.ndarray, codebook: np.ndarray, return_distances: bool = False, threads: int | None = None):
    """x [N, D], codebook [K, D] float32 C-contiguous -> indices int64 [N] (and squared
    distances float32 [N])."""
    n, dim = x.shape
    index = np.zeros(n, np.int64)
    best = np.empty(n, np.float32)
    if n and codebook.shape[0]:
        parallel = _parallel_allowed()
        width, (nearest_kernel, _) = _kernels(dim, len(codebook), parallel)
        if width:
            prepared = (_pad_columns(codebook, width), _sq_norms(codebook))
        else:
            prepared = (np.empty((dim, _padded(len(codebook))), np.float32), np.empty(_padded(len(codebook)), np.float32))
            _prepare_general(codebook, *prepared)
        with _LAUNCH:
            if parallel:
                _with_threads(threads)
            nearest_kernel(x, *prepared, index, best)
    if not return_distances:
        return index
    return index, best + _sq_norms(x)


def rvq_encode(x: np.ndarray, codebooks: np.ndarray, threads: int | None = None) -> np.ndarray:
    """x [N, D], codebooks [L, K, D] float32 C-contiguous -> codes int64 [L, N]."""
    n, dim = x.shape
    levels = codebooks.shape[0]
    codes = np.zeros((levels, n), np.int64)
    if n and levels and codebooks.shape[1]:
        parallel = _parallel_allowed()
        width, (_, rvq_kernel) = _kernels(dim, codebooks.shape[1], parallel)
        if width:
            prepared = np.stack([_pad_columns(c, width) for c in codebooks])
            cns = np.stack([_sq_norms(c) for c in codebooks])
        else:
            kp = _padded(codebooks.shape[1])
            prepared, cns = np.empty((levels, dim, kp), np.float32), np.empty((levels, kp), np.float32)
            for level in range(levels):
                _prepare_general(codebooks[level], prepared[level], cns[level])
        with _LAUNCH:
            if parallel:
                _with_threads(threads)
            rvq_kernel(x, codebooks, prepared, cns, codes)
    return codes

