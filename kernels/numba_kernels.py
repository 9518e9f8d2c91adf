"""The CPU kernels' source, in numba: compiled once per machine into one object file that
`numba_cpu` loads and calls without importing numba (see `build`).

Every distance is `||c||^2 - 2 x.c` in float32, with x.c and ||c||^2 accumulated over the
dimensions in order 0..D-1 by fused multiply-adds (`llvm.fma`, one rounding each), and the
distance rounded once from the exact `||c||^2 - 2 x.c` (as `||c||^2 - (x.c + x.c)`, or as
`fma(-2, x.c, ||c||^2)`: the same value). Each (row, code) distance is therefore a fixed sequence
of IEEE operations on that row and that code alone: it does not depend on N, on the other rows,
on block sizes, on vector width or on the number of threads. The argmin keeps the lowest index
on ties, as `torch.argmin` does. Together these give the invariant the codec relies on: a row's
code is the same whether the file is encoded whole, in windows, or on 1 or 2 threads.

Two layouts, chosen by D alone (never by N), with sizes from the tiling (`cpu_layout.Tiling`,
chosen for the CPU: the values below are AVX-512's, AVX2's in brackets):
- D > 16: rows go in blocks of 8 micro-tiles' rows, shared out among threads (see
  `numba_cpu._run`). A block sweeps the codebook, held transposed in contiguous panels of cols
  codes ([K / cols, D, cols]), in tiles of a quarter of L2; a micro-kernel computes 6 rows x
  4W codes [6 x 2W] (W = SIMD width: 16 floats with AVX-512, else 8) with its accumulators in
  vector registers for all of D, then folds them into each row's (best, index) in registers
  too: a SIMD test against the row's best, and only when it passes a horizontal minimum and
  the first lane equal to it.
- D <= 16 (factorised / low-dim codes): rows in SIMD lanes (2W rows for D <= 8, W [2W] for
  D <= 16), D padded to 8 or 16, so that the block's coordinates (where they fit) and its
  running (best, index) stay in vector registers while the codes stream past, 2 or 4 [2]
  codes per step.

Both are written with explicit <W x float> vectors (`_vload`, `_vfma`, ...: numba intrinsics
over LLVM vector types) rather than left to the auto-vectoriser, which vectorised the same
loops on some builds and not on others. `rvq_encode` does all levels for one block of rows
before moving on, the residual staying in that block's scratch buffer.

The kernels allocate nothing: callers pass every buffer, scratch included, so that the compiled
code needs no numba runtime (NRT) and can run outside numba.
"""
from __future__ import annotations

import itertools

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .cpu_layout import ENTRY_POINTS, Tiling

_INF = np.float32(np.inf)


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma), so that no compiler flag can change it."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


# ---- shared pieces --------------------------------------------------------------------------

@njit(fastmath=False)
def _sq_norms(rows, out):
    """out[i] = ||rows[i]||^2 for rows [M, D], accumulated over d in order."""
    for i in range(rows.shape[0]):
        s = np.float32(0.0)
        for d in range(rows.shape[1]):
            s = _fma(rows[i, d], rows[i, d], s)
        out[i] = s


@njit
def _all_finite(bits):
    """No NaN or inf among float32 values given as their bits: no exponent field all ones."""
    worst = np.uint32(0)
    for i in range(bits.size):
        worst = max(worst, bits[i] & np.uint32(0x7F800000))
    return worst < np.uint32(0x7F800000)


@njit
def _same_bits(a, b):
    """Two float32 arrays, given as their bits, are the same bits."""
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
# <W x float> values that numba keeps in registers, one set of intrinsics per width W (the
# tiling's `simd`): the generated kernels see them as _vload, _vstore, _vsplat, _vfma, _vselect_lt.

_SIMD: dict = {}


def _simd(width: int) -> dict:
    """{name: intrinsic} over <width x float> vectors, made once per width."""
    if width in _SIMD:
        return _SIMD[width]
    vec = ir.VectorType(ir.FloatType(), width)

    class Vector(types.Type):
        def __init__(self):
            super().__init__(name=f"float32x{width}")

    vector = Vector()

    @register_model(Vector)
    class VectorModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, vec)

    def element_pointer(context, builder, aryty, array, i, j):
        ary = context.make_array(aryty)(context, builder, array)
        return builder.bitcast(cgutils.get_item_pointer(context, builder, aryty, ary, [i, j]), vec.as_pointer())

    def float_matrix(array) -> bool:
        return isinstance(array, types.Array) and array.dtype == types.float32 and array.ndim == 2 and array.layout == "C"

    @intrinsic
    def vload(typingctx, array, i, j):
        """The W floats array[i, j:j + W] (a C-contiguous float32 2-D array, no bounds check)."""
        if not float_matrix(array):
            return None

        def codegen(context, builder, signature, args):
            return builder.load(element_pointer(context, builder, signature.args[0], *args), align=4)

        return vector(array, i, j), codegen

    @intrinsic
    def vstore(typingctx, array, i, j, value):
        """array[i, j:j + W] = value."""
        if not (float_matrix(array) and value == vector):
            return None

        def codegen(context, builder, signature, args):
            builder.store(args[3], element_pointer(context, builder, signature.args[0], *args[:3]), align=4)
            return context.get_dummy_value()

        return types.none(array, i, j, value), codegen

    @intrinsic
    def vsplat(typingctx, scalar):
        if scalar != types.float32:
            return None

        def codegen(context, builder, signature, args):
            one = builder.insert_element(ir.Constant(vec, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
            lanes = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
            return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), lanes)

        return vector(scalar), codegen

    @intrinsic
    def vfma(typingctx, a, b, c):
        """a * b + c lane by lane, one rounding (llvm.fma)."""
        if not (a == b == c == vector):
            return None

        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{width}f32")
            return builder.call(fn, args)

        return vector(a, b, c), codegen

    @intrinsic
    def vselect_lt(typingctx, a, b, p, q):
        """Lane by lane: p where a < b, else q."""
        if not (a == b == p == q == vector):
            return None

        def codegen(context, builder, signature, args):
            return builder.select(builder.fcmp_ordered("<", args[0], args[1]), args[2], args[3])

        return vector(a, b, p, q), codegen

    @intrinsic
    def vdistance(typingctx, norm, dot):
        """norm - (dot + dot) lane by lane, each operation rounded: the scalar fold's expression."""
        if not (norm == dot == vector):
            return None

        def codegen(context, builder, signature, args):
            return builder.fsub(args[0], builder.fadd(args[1], args[1]))

        return vector(norm, dot), codegen

    @intrinsic
    def vless(typingctx, a, b):
        """Lane by lane: a where a < b, else b (vminps; a NaN in a lane gives b)."""
        if not (a == b == vector):
            return None

        def codegen(context, builder, signature, args):
            return builder.select(builder.fcmp_ordered("<", args[0], args[1]), args[0], args[1])

        return vector(a, b), codegen

    @intrinsic
    def vany_lt(typingctx, a, b):
        """Whether a < b in any lane."""
        if not (a == b == vector):
            return None

        def codegen(context, builder, signature, args):
            mask = builder.bitcast(builder.fcmp_ordered("<", args[0], args[1]), ir.IntType(width))
            return builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(width), 0))

        return types.boolean(a, b), codegen

    @intrinsic
    def vany_nan(typingctx, a):
        """Whether any lane is NaN."""
        if a != vector:
            return None

        def codegen(context, builder, signature, args):
            mask = builder.bitcast(builder.fcmp_unordered("uno", args[0], args[0]), ir.IntType(width))
            return builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(width), 0))

        return types.boolean(a), codegen

    @intrinsic
    def vhmin(typingctx, a):
        """The least lane (halves folded with select(<): exact where no lane is NaN)."""
        if a != vector:
            return None

        def codegen(context, builder, signature, args):
            value, half = args[0], width // 2
            while half:
                lanes = ir.Constant(ir.VectorType(ir.IntType(32), width), [i + half if i < half else i for i in range(width)])
                upper = builder.shuffle_vector(value, ir.Constant(vec, ir.Undefined), lanes)
                value = builder.select(builder.fcmp_ordered("<", value, upper), value, upper)
                half //= 2
            return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))

        return types.float32(a), codegen

    @intrinsic
    def vfirst_eq(typingctx, a, scalar):
        """The first lane of a equal to scalar, or W if none."""
        if not (a == vector and scalar == types.float32):
            return None

        def codegen(context, builder, signature, args):
            one = builder.insert_element(ir.Constant(vec, ir.Undefined), args[1], ir.Constant(ir.IntType(32), 0))
            splat = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                           ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))
            mask = builder.bitcast(builder.fcmp_ordered("==", args[0], splat), ir.IntType(width))
            first = builder.cttz(mask, ir.Constant(ir.IntType(1), 0))
            return builder.zext(first, ir.IntType(64))

        return types.int64(a, scalar), codegen

    _SIMD[width] = {"_vany_nan": vany_nan, "_vhmin": vhmin, "_vfirst_eq": vfirst_eq, "_vload": vload, "_vstore": vstore, "_vsplat": vsplat, "_vfma": vfma, "_vselect_lt": vselect_lt,
                    "_vdistance": vdistance, "_vless": vless, "_vany_lt": vany_lt, "_W": width}
    return _SIMD[width]


# ---- generated micro-kernels ---------------------------------------------------------------------
# numba keeps scalars and <W x float> locals in registers but not arrays, so a register-blocked
# micro-kernel needs one named local per accumulator and its loops unrolled by hand. Those bodies
# are formatted here from one template each, for the tiling's shapes, and compiled as if written
# in this file (the code objects carry its name, for tracebacks). `_GENERATED[name]` holds each
# source; the name carries the shape and W.

_GENERATED: dict = {}


def _compile(name: str, lines: list, simd: int, options: str = ""):
    """The @njit function `name`, defined by `lines`, with this module's globals and the
    <simd x float> intrinsics; `options`: more njit keywords."""
    source = "\n".join([f"@njit(fastmath=False{options})", *lines, ""])
    _GENERATED[name] = source
    namespace: dict = {}
    exec(compile(source, __file__, "exec"), {**globals(), **_simd(simd)}, namespace)  # noqa: S102 - our own template
    return namespace[name]


def _names(pattern: str, *ranges: int) -> list:
    """pattern formatted over the product of ranges, e.g. _names("a{}{}", 2, 3) -> a00 .. a12."""
    return [pattern.format(*i) for i in itertools.product(*map(range, ranges))]


def _tuple_assign(targets: list, values: list) -> str:
    return ", ".join(targets) + " = " + ", ".join(values)


def _micro_tile_kernel(rows: int, vectors: int, simd: int):
    """_micro_tile(xb, r, live, panel, cn, p, best, index): the dots of rows r .. r+rows-1 of xb
    with the cols = vectors * W codes of panel p (rows p*D .. p*D+D-1 of `panel`, one code per
    column), in rows x vectors accumulators held in registers, each an fma chain over
    d = 0..D-1 (one code vector load and one broadcast of x[r+q, d] per step); then each of the
    `live` real rows folds the panel's distances into its (best, index).

    A distance is ||c||^2 - (x.c + x.c), each operation rounded. The fold: the panel's least
    distance (a select(<) tree, exact when no distance is NaN), if it beats the row's best and
    no distance of the panel is NaN (an overflow: then the panel is passed over, as before
    this fold was vectorised), becomes the best, with the first code of the panel attaining
    it: panels are folded in code order, so the lowest index wins ties."""
    name = f"_micro_tile_{rows}x{vectors}_w{simd}"
    acc = [[f"a{q}_{v}" for v in range(vectors)] for q in range(rows)]
    cols, norms = _names("c{}", vectors), _names("n{}", vectors)
    lines = [f"def {name}(xb, r, live, panel, cn, p, best, index):",
             "    zero = _vsplat(np.float32(0.0))",
             f"    {' = '.join(itertools.chain(*acc))} = zero",
             "    base = p * xb.shape[1]",
             "    for d in range(xb.shape[1]):",
             "        " + _tuple_assign(cols, [f"_vload(panel, base + d, {v} * _W)" for v in range(vectors)])]
    for q in range(rows):
        lines.append(f"        s = _vsplat(xb[r + {q}, d])")
        lines.append("        " + _tuple_assign(acc[q], [f"_vfma(s, {c}, {a})" for c, a in zip(cols, acc[q])]))
    lines.append("    " + _tuple_assign(norms, [f"_vload(cn, p, {v} * _W)" for v in range(vectors)]))
    for q in range(rows):
        dists = _names(f"d{q}_{{}}", vectors)
        lines.append("    " + _tuple_assign(dists, [f"_vdistance({n}, {a})" for n, a in zip(norms, acc[q])]))
        tree = list(dists)
        while len(tree) > 1:
            tree = [f"_vless({a}, {b})" if b else a for a, b in itertools.zip_longest(tree[::2], tree[1::2])]
        lines += [f"    low = {tree[0]}",
                  f"    if {q} < live and _vany_lt(low, _vsplat(best[r + {q}])) and not ({' or '.join(f'_vany_nan({d})' for d in dists)}):",
                  "        low_value = _vhmin(low)",
                  f"        best[r + {q}] = low_value"]
        for v, d in enumerate(dists[:-1]):  # the first vector holding it
            indent = "        " + "    " * v
            lines += [f"{indent}j = _vfirst_eq({d}, low_value)", f"{indent}if j < _W:",
                      f"{indent}    index[r + {q}] = p * {vectors * simd} + {v} * _W + j", f"{indent}else:"]
        indent = "        " + "    " * (vectors - 1)
        lines.append(f"{indent}index[r + {q}] = p * {vectors * simd} + {vectors - 1} * _W + _vfirst_eq({dists[-1]}, low_value)")
    return _compile(name, lines, simd, ', inline="always"')  # no call: array arguments cost refcounts


# ---- general path (D > LOW_DIM): codes in lanes, `rows` rows at a time --------------------------

def _general_rvq(tiling: Tiling):
    """_rvq_general for the tiling: codes [L, N] for x [N, D], and in best_out the last level's
    distances (without ||x||^2); `nearest` is the one-level case. Blocks of `row_block` rows are
    claimed from `counter` until none is left (see numba_cpu._run); a block does all levels, its
    residual kept in `residual` [row_block, D]. The block sweeps the codebook in tiles of
    `tile_panels` panels (sized for the cache by the caller). Scratch, this thread's own: best
    and index [row_block], the residual. The tiling's sizes are closure constants."""
    micro_tile = _micro_tile_kernel(tiling.rows, tiling.vectors, tiling.simd)
    tile_rows, row_block = tiling.rows, tiling.row_block

    @njit(fastmath=False)
    def block_general(xb, nrows, panel, cn, tile_panels, best, index):
        """Nearest code for rows [0, nrows) of the block xb (rows padded to a multiple of
        tile_rows): best distance (without ||x||^2) and index. panel [Kp / cols * D, cols] holds
        the codes transposed in panels of cols codes ([D, cols] each, so that a micro-tile reads
        one contiguous panel), and with cn [Kp / cols, cols] is padded with zero codes of norm
        +inf, which never win."""
        panels = cn.shape[0]
        for i in range(nrows):
            best[i] = _INF
            index[i] = 0
        for p0 in range(0, panels, tile_panels):
            for r in range(0, nrows, tile_rows):
                for p in range(p0, min(p0 + tile_panels, panels)):
                    micro_tile(xb, r, nrows - r, panel, cn, p, best, index)

    @njit(fastmath=False)
    def rvq_general(x, codebooks, panels, cns, tile_panels, codes, best_out, counter, best, index, residual):
        n, dim = x.shape
        levels = codebooks.shape[0]
        while True:
            start = _claim(counter) * row_block
            if start >= n:
                return
            rows = min(row_block, n - start)
            residual[:] = np.float32(0.0)
            for i in range(rows):
                for d in range(dim):
                    residual[i, d] = x[start + i, d]
            for level in range(levels):
                block_general(residual, rows, panels[level], cns[level], tile_panels, best, index)
                for i in range(rows):
                    codes[level, start + i] = index[i]
                    if level + 1 < levels:
                        for d in range(dim):
                            residual[i, d] = residual[i, d] - codebooks[level, index[i], d]
            for i in range(rows):  # loops, not slices: a slice assignment brings a shape check's error path
                best_out[start + i] = best[i]

    return rvq_general


# ---- low-D path (D <= LOW_DIM): rows in lanes, D padded to a compile-time width -------------
# Padding adds fma(0, 0, s) = s (at most turning -0 into +0, which no comparison sees), so a
# row's distances are those of its D true dimensions. A code's distance is fma(-2, x.c, ||c||^2),
# the same value as ||c||^2 - (x.c + x.c). Indices ride in float lanes (exact below 2^24 codes).

def _low_block_kernel(width: int, vectors: int, step: int, simd: int):
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

    name = f"_low_block_{width}_{vectors}x{step}_w{simd}"
    lines = [f"def {name}(xt, code_p, cn, best, index):",
             "    zero = _vsplat(np.float32(0.0))",
             "    minus_two = _vsplat(np.float32(-2.0))"]
    lines += ["    " + _tuple_assign([f"x{d}_{v}" for d in range(width)], [f"_vload(xt, {d}, {v} * _W)" for d in range(width)])
              for v in vs]
    lines += [f"    b{v}, i{v} = _vsplat(_INF), zero" for v in vs]
    lines += ["    k = 0", f"    while k + {step} <= code_p.shape[0]:", *codes(step), "    while k < code_p.shape[0]:", *codes(1)]
    lines += [f"    _vstore({array}, 0, {v} * _W, {reg}{v})" for v in vs for array, reg in (("best", "b"), ("index", "i"))]
    return _compile(name, lines, simd)


def _low_dim_rvq(tiling: Tiling, width: int):
    """The low-D counterpart of _rvq_general for one width. Scratch, this thread's own: best
    and index [1, lanes], and xt [width, lanes], the block's residual transposed."""
    lanes = tiling.low_rows(width)
    low_block = _low_block_kernel(width, *tiling.low_shape(width), tiling.simd)

    @njit(fastmath=False)
    def rvq_low(x, codebooks, codes_p, cns, codes, best_out, counter, best, idx, xt):
        n, dim = x.shape
        levels = codebooks.shape[0]
        while True:
            start = _claim(counter) * lanes
            if start >= n:
                return
            rows = min(lanes, n - start)
            xt[:] = np.float32(0.0)
            for i in range(rows):
                for d in range(dim):
                    xt[d, i] = x[start + i, d]
            for level in range(levels):
                low_block(xt, codes_p[level], cns[level], best, idx)
                for i in range(rows):
                    chosen = np.int64(idx[0, i])
                    codes[level, start + i] = chosen
                    if level + 1 < levels:
                        for d in range(dim):
                            xt[d, i] = xt[d, i] - codebooks[level, chosen, d]
            for i in range(rows):
                best_out[start + i] = best[0, i]

    return rvq_low


# ---- entry points: C functions over raw pointers (signatures in cpu_layout.ENTRY_POINTS) ----------

def _sq_norms_entry(rows, n, d, out):
    _sq_norms(carray(rows, (n, d)), carray(out, (n,)))


def _all_finite_entry(bits, n):
    return np.int32(_all_finite(carray(bits, (n,))))


def _same_bits_entry(a, b, n):
    return np.int32(_same_bits(carray(a, (n,)), carray(b, (n,))))


def _rvq_general_entry(tiling: Tiling):
    kernel, cols, row_block = _general_rvq(tiling), tiling.cols, tiling.row_block

    def entry(x, n, d, codebooks, levels, k, panels, kp, tile_panels, norms, codes, best_out, counter, best, index,
              residual):
        kernel(carray(x, (n, d)), carray(codebooks, (levels, k, d)), carray(panels, (levels, kp // cols * d, cols)),
               carray(norms, (levels, kp // cols, cols)), tile_panels, carray(codes, (levels, n)), carray(best_out, (n,)),
               carray(counter, (1,)), carray(best, (row_block,)), carray(index, (row_block,)), carray(residual, (row_block, d)))

    return entry


def _rvq_low_entry(tiling: Tiling, width: int):
    kernel, lanes = _low_dim_rvq(tiling, width), tiling.low_rows(width)

    def entry(x, n, d, codebooks, levels, k, codes_p, norms, codes, best_out, counter, best, index, xt):
        kernel(carray(x, (n, d)), carray(codebooks, (levels, k, d)), carray(codes_p, (levels, k, width)),
               carray(norms, (levels, k)), carray(codes, (levels, n)), carray(best_out, (n,)), carray(counter, (1,)),
               carray(best, (1, lanes)), carray(index, (1, lanes)), carray(xt, (width, lanes)))

    return entry


_NUMBA_TYPES = {"void": types.void, "i32": types.int32, "i64": types.int64, "f32*": types.CPointer(types.float32),
                "u32*": types.CPointer(types.uint32), "i64*": types.CPointer(types.int64)}


def build(tiling: Tiling) -> dict:
    """{entry point: (symbol, object code for the CPU numba targets)} for every entry point of
    cpu_layout.ENTRY_POINTS with the tiling's sizes, each object holding its entry point and
    all it calls. The objects refer to nothing outside them but libc and the error paths of
    numba's C wrappers (Python and numba runtime functions), which our kernels never take: they
    allocate nothing, check no bounds and use error_model="numpy"."""
    python = {"sq_norms": _sq_norms_entry, "all_finite": _all_finite_entry, "same_bits": _same_bits_entry,
              "rvq_general": _rvq_general_entry(tiling), "rvq_low8": _rvq_low_entry(tiling, 8),
              "rvq_low16": _rvq_low_entry(tiling, 16)}
    built = {}
    for name, (result, *args) in ENTRY_POINTS.items():
        signature = _NUMBA_TYPES[result](*(_NUMBA_TYPES[a] for a in args))
        function = cfunc(signature, error_model="numpy")(python[name])
        built[name] = (function.native_name, function._library._get_compiled_object())
    return built
