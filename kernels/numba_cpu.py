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

import itertools
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
    """_micro_tile(xb, r, code_t, k0, tile): tile[q, j] = x[r+q] . c[k0+j] for q < rows and
    j < vectors * W, with rows x vectors accumulators in registers, each an fma chain over
    d = 0..D-1 (one code vector load and one broadcast of x[r+q, d] per step)."""
    acc = [[f"a{q}{v}" for v in range(vectors)] for q in range(rows)]
    cols = _names("c{}", vectors)
    lines = ["def _micro_tile(xb, r, code_t, k0, tile):",
             "    zero = _vsplat(np.float32(0.0))",
             f"    {' = '.join(itertools.chain(*acc))} = zero",
             "    for d in range(xb.shape[1]):",
             "        " + _tuple_assign(cols, [f"_vload(code_t, d, k0 + {v} * _W)" for v in range(vectors)])]
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

