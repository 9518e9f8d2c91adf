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
- D > 16: rows go in blocks of 48, shared out among threads (see `_run`). A block sweeps the
  codebook, held transposed in contiguous panels of 4W codes ([K / 4W, D, 4W]), in cache-sized
  tiles of 256 codes; a micro-kernel computes 6 rows x 4W codes (W = SIMD width: 16 floats with
  AVX-512, else 8) with its 24 accumulators in vector registers for all of D, then each row's
  tile minimum is taken with SIMD and only when it beats the row's best is its first index
  looked up.
- D <= 16 (factorised / low-dim codes): rows in SIMD lanes (2W rows for D <= 8, W for D <= 16),
  D padded to 8 or 16, so that the block's coordinates and its running (best, index) stay in
  vector registers while the codes stream past, 2 or 4 codes per step.

Both are written with explicit <W x float> vectors (`_vload`, `_vfma`, ...: numba intrinsics
over LLVM vector types) rather than left to the auto-vectoriser, which vectorised the same
loops on some builds and not on others.

`rvq_encode` does all levels for one block of rows before moving on, the residual staying in
that block's buffer. The codebooks' layout (transposed or padded, with norms) is prepared once
and kept while the same codebooks come back (`_prepared_for`). Compiled code is cached on disk
(`cache=True`); see `_choose_cache_dir`.
"""
from __future__ import annotations

import itertools
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

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

from numba import njit  # noqa: E402
from numba.core import cgutils, types  # noqa: E402
from numba.extending import intrinsic, models, register_model  # noqa: E402
from llvmlite import ir  # noqa: E402

LOW_DIM = 16       # D <= LOW_DIM takes the rows-in-lanes path
_ROW_BLOCK = 48    # general path: rows per block a thread claims (a multiple of _ROWS)
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


@njit(cache=True, nogil=True)
def _all_finite(a):
    """No NaN or inf in the C-contiguous float32 array `a`: no exponent field is all ones."""
    bits = a.reshape(-1).view(np.uint32)
    worst = np.uint32(0)
    for i in range(bits.size):
        worst = max(worst, bits[i] & np.uint32(0x7F800000))
    return worst < np.uint32(0x7F800000)


@njit(cache=True, nogil=True)
def _same_bits(a, b):
    """C-contiguous float32 arrays of one shape hold the same bits."""
    a, b = a.reshape(-1).view(np.uint32), b.reshape(-1).view(np.uint32)
    diff = np.uint32(0)
    for i in range(a.size):
        diff |= a[i] ^ b[i]
    return diff == 0


@intrinsic
def _claim(typingctx, counter):
    """counter[0] += 1, atomically; the value before. Threads share out blocks with it."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen


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


# ---- generated micro-kernels ---------------------------------------------------------------------
# numba keeps scalars and <W x float> locals in registers but not arrays, so a register-blocked
# micro-kernel needs one named local per accumulator and its loops unrolled by hand. Those bodies
# are formatted here from one template each and compiled as if written in this file: the code
# objects carry this file's name, so numba's disk cache (keyed on this file's stamp, the
# function's qualified name and its bytecode) works as for any function here, and any edit to
# this file (templates, intrinsics) invalidates it. `_GENERATED[name]` holds each source.

_GENERATED: dict = {}


def _compile(name: str, lines: list):
    """The @njit function `name`, defined by `lines`, with this module's globals."""
    source = "\n".join(["@njit(cache=True, fastmath=False)", *lines, ""])
    _GENERATED[name] = source
    namespace: dict = {}
    exec(compile(source, __file__, "exec"), globals(), namespace)  # noqa: S102 - our own template
    return namespace[name]


def _names(pattern: str, *ranges: int) -> list:
    """pattern formatted over the product of ranges, e.g. _names("a{}{}", 2, 3) -> a00 .. a12."""
    return [pattern.format(*i) for i in itertools.product(*map(range, ranges))]


def _tuple_assign(targets: list, values: list) -> str:
    return ", ".join(targets) + " = " + ", ".join(values)


def _micro_tile_kernel(rows: int, vectors: int):
    """_micro_tile(xb, r, panel, tile): tile[q, j] = x[r+q] . c_j for q < rows and the codes
    j < vectors * W of panel [D, vectors * W], with rows x vectors accumulators in registers,
    each an fma chain over d = 0..D-1 (one code vector load and one broadcast of x[r+q, d] per
    step)."""
    acc = [[f"a{q}{v}" for v in range(vectors)] for q in range(rows)]
    cols = _names("c{}", vectors)
    lines = ["def _micro_tile(xb, r, panel, tile):",
             "    zero = _vsplat(np.float32(0.0))",
             f"    {' = '.join(itertools.chain(*acc))} = zero",
             "    for d in range(xb.shape[1]):",
             "        " + _tuple_assign(cols, [f"_vload(panel, d, {v} * _W)" for v in range(vectors)])]
    for q in range(rows):
        lines.append(f"        s = _vsplat(xb[r + {q}, d])")
        lines.append("        " + _tuple_assign(acc[q], [f"_vfma(s, {c}, {a})" for c, a in zip(cols, acc[q])]))
    lines += [f"    _vstore(tile, {q}, {v} * _W, {acc[q][v]})" for q in range(rows) for v in range(vectors)]
    return _compile("_micro_tile", lines)


# ---- general path (D > LOW_DIM): codes in lanes, six rows at a time --------------------------

_ROWS = 6           # rows per micro-tile
_COLS = 4 * _W      # codes per micro-tile
_micro_tile = _micro_tile_kernel(_ROWS, _COLS // _W)


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
def _block_general(xb, nrows, panels, cn, best, index, tile):
    """Nearest code for rows [0, nrows) of the block xb (rows padded to a multiple of _ROWS):
    best distance (without ||x||^2) and index. panels [Kp / _COLS, D, _COLS] holds the codes
    transposed, _COLS codes per panel (so that a micro-tile reads one contiguous panel), and
    with cn [Kp] is padded with zero codes of norm +inf, which never win."""
    kp = panels.shape[0] * _COLS
    for i in range(nrows):
        best[i] = _INF
        index[i] = 0
    for k0 in range(0, kp, _CODE_TILE):
        for r in range(0, nrows, _ROWS):
            for j0 in range(k0, min(k0 + _CODE_TILE, kp), _COLS):
                _micro_tile(xb, r, panels[j0 // _COLS], tile)
                for q in range(min(_ROWS, nrows - r)):
                    _fold(tile[q], cn, j0, _COLS, best, index, r + q)


def _padded(k: int) -> int:
    return (k + _COLS - 1) // _COLS * _COLS


@njit(cache=True, fastmath=False, nogil=True)
def _rvq_general(x, codebooks, panels, cns, codes, best_out, counter):
    """codes [L, N] for x [N, D], and in best_out the last level's distances (without ||x||^2):
    `nearest` is the one-level case. Blocks of _ROW_BLOCK rows are claimed from `counter` until
    none is left (see _run); a block does all levels, its residual kept in its buffer."""
    n, dim = x.shape
    levels = codebooks.shape[0]
    tile = np.empty((_ROWS, _COLS), np.float32)
    best = np.empty(_ROW_BLOCK, np.float32)
    index = np.empty(_ROW_BLOCK, np.int64)
    while True:
        start = _claim(counter) * _ROW_BLOCK
        if start >= n:
            return
        rows = min(_ROW_BLOCK, n - start)
        residual = np.zeros((_ROW_BLOCK, dim), np.float32)
        residual[:rows] = x[start:start + rows]
        for level in range(levels):
            _block_general(residual, rows, panels[level], cns[level], best, index, tile)
            for i in range(rows):
                codes[level, start + i] = index[i]
                if level + 1 < levels:
                    chosen = codebooks[level, index[i]]
                    for d in range(dim):
                        residual[i, d] = residual[i, d] - chosen[d]
        best_out[start:start + rows] = best[:rows]


# ---- low-D path (D <= LOW_DIM): rows in lanes, D padded to a compile-time width -------------
# Padding adds fma(0, 0, s) = s (at most turning -0 into +0, which no comparison sees), so a
# row's distances are those of its D true dimensions. A code's distance is fma(-2, x.c, ||c||^2),
# the same value as ||c||^2 - (x.c + x.c). Indices ride in float lanes (exact below 2^24 codes).

def _low_block_kernel(width: int, vectors: int, step: int):
    """_low_block_<width>(xt, code_p, cn, best, index): `vectors` x W rows in lanes, their
    coordinates xt [width, vectors * W] held in registers (x{d}_{v}) with each lane's running
    best distance (b{v}) and index (i{v}, a float), against every code of code_p [K, width]:
    `step` codes at a time, then one at a time for the last K mod step. Writes best[0] and
    index[0]."""
    vs = range(vectors)

    def codes(count: int) -> list:  # dots of codes k .. k+count-1, folded into (b, i) in code order
        out = [f"        {' = '.join(_names('s{}_{}', count, vectors))} = zero"]
        for d in range(width):
            for u in range(count):
                out.append(f"        c = _vsplat(code_p[k + {u}, {d}])")
                out.append("        " + _tuple_assign([f"s{u}_{v}" for v in vs], [f"_vfma(x{d}_{v}, c, s{u}_{v})" for v in vs]))
        for u in range(count):
            out.append(f"        norm, kf = _vsplat(cn[k + {u}]), _vsplat(np.float32(k + {u}))")
            for v in vs:
                out += [f"        dist = _vfma(minus_two, s{u}_{v}, norm)",
                        f"        i{v} = _vselect_lt(dist, b{v}, kf, i{v})",
                        f"        b{v} = _vselect_lt(dist, b{v}, dist, b{v})"]
        return out + [f"        k += {count}"]

    name = f"_low_block_{width}"
    lines = [f"def {name}(xt, code_p, cn, best, index):",
             "    zero = _vsplat(np.float32(0.0))",
             "    minus_two = _vsplat(np.float32(-2.0))"]
    lines += ["    " + _tuple_assign([f"x{d}_{v}" for d in range(width)], [f"_vload(xt, {d}, {v} * _W)" for d in range(width)])
              for v in vs]
    lines += [f"    b{v}, i{v} = _vsplat(_INF), zero" for v in vs]
    lines += ["    k = 0", f"    while k + {step} <= code_p.shape[0]:", *codes(step), "    while k < code_p.shape[0]:", *codes(1)]
    lines += [f"    _vstore({array}, 0, {v} * _W, {reg}{v})" for v in vs for array, reg in (("best", "b"), ("index", "i"))]
    return _compile(name, lines)


_LOW_SHAPES = {8: (2, 2), 16: (1, 4)}  # width: (vectors of rows, codes per step); x fills 16 registers
_LOW_ROWS = {width: vectors * _W for width, (vectors, _) in _LOW_SHAPES.items()}  # rows per block
_MAX_LOW_CODES = 1 << 24
_low_block_8 = _low_block_kernel(8, *_LOW_SHAPES[8])
_low_block_16 = _low_block_kernel(16, *_LOW_SHAPES[16])


def _low_dim_rvq(width: int):
    """The low-D counterpart of _rvq_general for one width. numba keys its disk cache on
    closure values, so each width is compiled and cached on its own, on first use."""
    lanes = _LOW_ROWS[width]

    @njit(cache=True, fastmath=False, nogil=True)
    def rvq_low(x, codebooks, codes_p, cns, codes, best_out, counter):
        n, dim = x.shape
        levels = codebooks.shape[0]
        best = np.empty((1, lanes), np.float32)
        idx = np.empty((1, lanes), np.float32)
        while True:
            start = _claim(counter) * lanes
            if start >= n:
                return
            rows = min(lanes, n - start)
            xt = np.zeros((width, lanes), np.float32)  # the residual, transposed
            for i in range(rows):
                for d in range(dim):
                    xt[d, i] = x[start + i, d]
            for level in range(levels):
                if width == 8:  # a closure constant: numba prunes the other branch
                    _low_block_8(xt, codes_p[level], cns[level], best, idx)
                else:
                    _low_block_16(xt, codes_p[level], cns[level], best, idx)
                for i in range(rows):
                    chosen = np.int64(idx[0, i])
                    codes[level, start + i] = chosen
                    if level + 1 < levels:
                        for d in range(dim):
                            xt[d, i] = xt[d, i] - codebooks[level, chosen, d]
            best_out[start:start + rows] = best[0, :rows]

    return rvq_low


_low_built: dict = {}


def _kernel(width: int):
    """(rvq kernel, rows per block) for the general path (width 0) or a low-D width."""
    if width == 0:
        return _rvq_general, _ROW_BLOCK
    if width not in _low_built:
        _low_built[width] = _low_dim_rvq(width)
    return _low_built[width], _LOW_ROWS[width]


def _width(dim: int, codes: int) -> int:
    """The path, by D (and K) alone, never by N: 0 (general) or the low-D width."""
    return 0 if dim > LOW_DIM or codes > _MAX_LOW_CODES else 8 if dim <= 8 else 16


# ---- threads ------------------------------------------------------------------------------------
# The kernels run on this thread and on helper threads of our own pool, not in numba's parallel
# regions: each thread claims the next block of rows from a shared counter (an atomic add) until
# none is left. So a thread slowed by something else on the machine (on 2 cores, another
# process, or torch's OpenMP workers spinning for milliseconds after each torch op) simply
# claims fewer blocks, where a static split waits for the slowest. It also keeps numba's
# threading layers out of the process: no OpenMP pool spinning beside torch's, nothing that a
# forked child cannot use, no lock around calls. A row's code never depends on which thread
# computed it.

_PARALLEL_WORK = 1 << 22   # multiply-adds below which helpers cost more than they save (~50 us)
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:  # a forked child has none of its parent's threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _run(kernel, args: tuple, blocks: int, threads: int | None, work: int) -> None:
    """kernel(*args, counter) on this thread and up to `threads` - 1 helpers at once."""
    global _pool
    counter = np.zeros(1, np.int64)
    helpers = min(threads or os.cpu_count() or 1, blocks) - 1 if work >= _PARALLEL_WORK else 0
    futures = []
    if helpers > 0:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="rvqtool-kernels")
        futures = [_pool.submit(kernel, *args, counter) for _ in range(helpers)]
    kernel(*args, counter)
    for future in futures:
        future.result()


# ---- prepared codebooks -------------------------------------------------------------------------

class Prepared(NamedTuple):
    """Codebooks [L, K, D] laid out for the kernels: a copy of the codebooks (the residual update
    reads the chosen rows), the codes as the path reads them ([L, Kp / _COLS, D, _COLS] panels,
    K padded to a multiple of _COLS, or [L, K, width] with D padded) and their norms ([L, Kp],
    padding codes +inf, which never win)."""
    codebooks: np.ndarray
    codes: np.ndarray
    norms: np.ndarray
    width: int


def _prepare(codebooks: np.ndarray) -> Prepared:
    levels, k, dim = codebooks.shape
    width = _width(dim, k)
    own = codebooks.copy()
    norms = np.stack([_sq_norms(c) for c in own]) if levels else np.zeros((0, k), np.float32)
    if width:
        codes = np.zeros((levels, k, width), np.float32)
        codes[:, :, :dim] = own
        return Prepared(own, codes, norms, width)
    kp = _padded(k)
    padded = np.zeros((levels, kp, dim), np.float32)
    padded[:, :k] = own
    codes = np.ascontiguousarray(padded.reshape(levels, kp // _COLS, _COLS, dim).transpose(0, 1, 3, 2))
    padded_norms = np.full((levels, kp), np.inf, np.float32)
    padded_norms[:, :k] = norms
    return Prepared(own, codes, padded_norms, 0)


# The codec quantises window after window with the same codebooks: their layout is kept for the
# next call, found again by content (a bit-for-bit comparison costs ~1/15 of preparing), so that
# a codebook changed in place, by any means, is never served stale.
_PREPARED_SLOTS, _PREPARED_BYTES = 4, 64 << 20
_prepared: list = []  # most recently used last


def _prepared_for(codebooks: np.ndarray) -> Prepared:
    """prepare(codebooks), reused while the same bits come back; raises on NaN or inf."""
    for entry in reversed(_prepared):
        if entry.codebooks.shape == codebooks.shape and _same_bits(entry.codebooks, codebooks):
            return entry
    if not _all_finite(codebooks):
        raise ValueError("x or codebook holds NaN or inf")
    prepared = _prepare(codebooks)
    _prepared.append(prepared)
    while len(_prepared) > _PREPARED_SLOTS or sum(a.nbytes for e in _prepared for a in e[:3]) > _PREPARED_BYTES:
        _prepared.pop(0)
    return prepared


# ---- entry points (numpy in, numpy out; shapes and dtypes are the dispatcher's job) -------------

def nearest(x: np.ndarray, codebook: np.ndarray, return_distances: bool = False, threads: int | None = None):
    """x [N, D], codebook [K, D] float32 C-contiguous -> indices int64 [N] (and squared
    distances float32 [N]). Raises ValueError on NaN or inf."""
    codes, best = _encode(x, codebook[None], threads)
    if not return_distances:
        return codes[0]
    return codes[0], best + _sq_norms(x)


def rvq_encode(x: np.ndarray, codebooks: np.ndarray, threads: int | None = None) -> np.ndarray:
    """x [N, D], codebooks [L, K, D] float32 C-contiguous -> codes int64 [L, N]. Raises
    ValueError on NaN or inf."""
    return _encode(x, codebooks, threads)[0]


def _encode(x: np.ndarray, codebooks: np.ndarray, threads: int | None):
    """(codes [L, N], the last level's distances without ||x||^2 [N])."""
    n, dim = x.shape
    levels, k, _ = codebooks.shape
    codes = np.zeros((levels, n), np.int64)
    best = np.empty(n, np.float32)
    if not _all_finite(x):
        raise ValueError("x or codebook holds NaN or inf")
    prepared = _prepared_for(codebooks)
    if n and levels and k:
        kernel, rows = _kernel(prepared.width)
        _run(kernel, (x, prepared.codebooks, prepared.codes, prepared.norms, codes, best), -(-n // rows), threads,
             n * k * dim * levels)
    return codes, best
