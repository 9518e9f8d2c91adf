"""Every kernel backend (torch reference, numba, Triton in interpreter mode) against a float64
brute force, and the invariants the codec relies on.

Exactness rule. For a row x, let e_k = ||x - c_k||^2 in float64, b the float64 argmin and c the
chosen index. A float32 kernel computes ||c_k||^2 - 2 x.c_k with sums of D terms, whose error is
at most gamma * (||x||^2 + 2 ||c_k||^2), gamma = (D + 2) * 2^-24, whatever the summation order.
So a correct kernel satisfies

    e_c - e_b <= tol,  tol = 2 * gamma * (||x||^2 + 2 * max_k ||c_k||^2)

(a near-tie), and the returned squared distance is within 2 * tol of e_c. On random data at
least 99 % of rows must equal b exactly. Ties in float32 itself (duplicate codebook rows) go
to the lowest index, and `rvq_encode` equals `nearest` level by level bit for bit.

Invariants (numba and Triton): a row's index does not depend on N, on the other rows, on how
the rows are split into windows, or on the number of threads; a forked child gets the same codes.

Triton runs with TRITON_INTERPRET=1 in a subprocess (the variable must be set before triton is
imported, and must not leak into this process), on the small cases only; it is skipped when
triton cannot be imported.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rvqtool import kernels
from rvqtool.kernels import reference

# name: (n, d, k, kind). kind: "randn"; "offset" (far from the origin, so that float32
# cancellation makes near-ties common); "dup" (every code appears twice, x often on a code)
CASES = {
    "n0": (0, 8, 16, "randn"),
    "n1": (1, 8, 16, "randn"),
    "n1_big_d": (1, 130, 300, "randn"),
    "d3": (257, 3, 33, "randn"),
    "d8": (300, 8, 1024, "randn"),
    "d13": (77, 13, 100, "randn"),
    "d16": (123, 16, 257, "randn"),
    "d17": (200, 17, 300, "randn"),
    "d37": (150, 37, 513, "randn"),
    "d128": (500, 128, 1024, "randn"),
    "d512": (60, 512, 100, "randn"),
    "dup_d8": (200, 8, 64, "dup"),
    "dup_d40": (200, 40, 64, "dup"),
    "offset_d8": (400, 8, 256, "offset"),
    "offset_d64": (400, 64, 256, "offset"),
    # smaller ones for the Triton interpreter (still several row blocks and code tiles, with tails)
    "t_d17": (70, 17, 150, "randn"),
    "t_d37": (33, 37, 130, "randn"),
    "t_dup_d40": (50, 40, 64, "dup"),
    "t_offset_d8": (90, 8, 140, "offset"),
}
# the Triton interpreter runs numpy per tile: only the small cases
TRITON_CASES = ["n0", "n1", "n1_big_d", "d13", "t_d17", "t_d37", "t_dup_d40", "t_offset_d8"]
# fp16 / bf16 inputs (a GPU path: the dispatcher sends CPU halves to the reference, so these call
# the Triton module directly)
TRITON_HALF_CASES = ["n1", "t_d17", "t_dup_d40"]
HALF_DTYPES = ["float16", "bfloat16"]


def make_case(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    n, d, k, kind = CASES[name]
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    if kind == "dup":
        half = torch.randn(k // 2, d, generator=g)
        codebook = torch.cat([half, half])[torch.randperm(k, generator=g)]
        x = codebook[torch.randint(k, (n,), generator=g)] + (torch.rand(n, 1, generator=g) < 0.5) * 0.1 * torch.randn(n, d, generator=g)
        return x.contiguous(), codebook
    x, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    if kind == "offset":
        x, codebook = 30.0 + 0.05 * x, 30.0 + 0.05 * codebook
    return x, codebook


def make_codebooks(name: str, levels: int = 4) -> torch.Tensor:
    _, d, k, _ = CASES[name]
    g = torch.Generator().manual_seed(7 + sum(map(ord, name)))
    return torch.randn(levels, k, d, generator=g) * torch.tensor([1.0, 0.5, 0.25, 0.125][:levels])[:, None, None]


def check_exactness(x, codebook, index, dist, kind):
    x64, c64 = x.double(), codebook.double()
    # float64 with its ~1e-16 relative error is exact at the scale of `tol`
    exact = (x64 * x64).sum(1)[:, None] + (c64 * c64).sum(1)[None] - 2 * x64 @ c64.T
    assert index.dtype == torch.int64 and index.shape == (len(x),)
    if not len(x):
        return
    want = exact.argmin(dim=1)
    gamma = (x.shape[1] + 2) * 2.0 ** -24
    tol = 2 * gamma * ((x64 * x64).sum(1) + 2 * (c64 * c64).sum(1).max())
    chosen, best = exact.gather(1, index[:, None])[:, 0], exact.gather(1, want[:, None])[:, 0]
    assert torch.all(chosen - best <= tol), f"worst excess {(chosen - best - tol).max():.3g} over tol"
    assert torch.all((dist.double() - chosen).abs() <= 2 * tol)
    if kind == "randn":
        assert (index == want).double().mean() >= 0.99
    if kind == "dup":  # float32 ties: the lowest of equal rows
        first = {}
        for i, row in enumerate(codebook.tolist()):
            first.setdefault(tuple(row), i)
        assert all(first[tuple(codebook[j].tolist())] == j for j in index.tolist())


def check_rvq(x, codebooks, codes, nearest):
    residual = x.clone()
    for level in range(len(codebooks)):
        assert torch.equal(codes[level], nearest(residual, codebooks[level])), f"level {level}"
        residual -= codebooks[level][codes[level]]


@pytest.fixture
def backend(request, monkeypatch):
    monkeypatch.setenv("RVQTOOL_KERNELS", request.param)
    x = torch.zeros(1, 4)
    if kernels.backend_for(x) != request.param:
        pytest.skip(f"{request.param} is not available here")
    return request.param


CPU_BACKENDS = ["reference", "numba"]


@pytest.mark.parametrize("backend", CPU_BACKENDS, indirect=True)
@pytest.mark.parametrize("name", sorted(CASES))
def test_nearest_exactness(backend, name):
    x, codebook = make_case(name)
    index, dist = kernels.nearest(x, codebook, return_distances=True)
    check_exactness(x, codebook, index, dist, CASES[name][3])
    assert torch.equal(kernels.nearest(x, codebook), index)


@pytest.mark.parametrize("backend", CPU_BACKENDS, indirect=True)
@pytest.mark.parametrize("name", ["n0", "n1", "d3", "d13", "d37", "d128", "offset_d8", "offset_d64"])
def test_rvq_encode_is_nearest_level_by_level(backend, name):
    x, _ = make_case(name)
    codebooks = make_codebooks(name)
    codes = kernels.rvq_encode(x, codebooks)
    assert codes.dtype == torch.int64 and codes.shape == (4, len(x))
    check_rvq(x, codebooks, codes, kernels.nearest)
    assert torch.equal(kernels.rvq_decode(codes[:0], codebooks), torch.zeros(len(x), x.shape[1]))


@pytest.mark.parametrize("backend", CPU_BACKENDS, indirect=True)
def test_input_handling(backend):
    g = torch.Generator().manual_seed(3)
    x, codebook = torch.randn(40, 20, generator=g), torch.randn(30, 20, generator=g)
    # non-contiguous views, tensors that require grad
    xt = torch.randn(20, 40, generator=g).t()
    assert torch.equal(kernels.nearest(xt, codebook), kernels.nearest(xt.contiguous(), codebook))
    with_grad = x.clone().requires_grad_()
    assert torch.equal(kernels.nearest(with_grad, codebook[::2]), kernels.nearest(x, codebook[::2].contiguous()))
    cbs = torch.randn(3, 30, 20, generator=g)
    assert torch.equal(kernels.rvq_encode(xt, cbs.transpose(1, 2).contiguous().transpose(1, 2)), kernels.rvq_encode(xt.contiguous(), cbs))
    with pytest.raises(TypeError, match="floating dtype"):
        kernels.nearest(x, codebook.double())
    with pytest.raises(TypeError, match="floating dtype"):
        kernels.rvq_encode(torch.zeros(4, 3, dtype=torch.int32), torch.zeros(2, 5, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="empty"):
        kernels.nearest(x, codebook[:0])
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[7, 3] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            kernels.nearest(y, codebook)
        with pytest.raises(ValueError, match="NaN or inf"):
            kernels.rvq_encode(x, torch.stack([codebook, y[:30]]))


@pytest.mark.parametrize("forced,want", [("", "reference"), ("reference", "reference"), ("numba", "reference"),
                                         ("triton", "triton"), (" Triton ", "triton")])
def test_cuda_tensors_go_to_triton_only_when_asked(monkeypatch, forced, want):
    """CUDA's default is the torch reference: the Triton kernels have never run on a GPU, so they
    are opt-in (RVQTOOL_KERNELS=triton) until a GPU run shows them exact. No GPU needed: the
    dispatcher reads only the device type and dtype, and Triton is stood in for."""
    from types import SimpleNamespace

    monkeypatch.setattr(kernels, "_loaded", {"triton": object(), "numba": None})
    monkeypatch.setenv("RVQTOOL_KERNELS", forced)
    for dtype in (torch.float32, torch.float16):
        assert kernels.backend_for(SimpleNamespace(device=torch.device("cuda"), dtype=dtype)) == want
    monkeypatch.setattr(kernels, "_loaded", {"triton": None, "numba": None})  # asked for, but not installed
    assert kernels.backend_for(SimpleNamespace(device=torch.device("cuda"), dtype=torch.float32)) == "reference"


# ---- invariants of the numba kernels ----------------------------------------------------------

INVARIANCE_CASES = ["d8", "d13", "d37", "offset_d8", "offset_d64"]


@pytest.mark.parametrize("backend", ["numba"], indirect=True)
@pytest.mark.parametrize("name", INVARIANCE_CASES)
def test_codes_do_not_depend_on_windows_order_or_threads(backend, name, monkeypatch):
    from rvqtool.kernels import numba_cpu

    monkeypatch.setattr(numba_cpu, "_chosen", numba_cpu._tiling()._replace(parallel_work=0))  # helpers for any size
    x, codebook = make_case(name)
    codebooks = torch.stack([codebook, make_codebooks(name, 3)[1], make_codebooks(name, 3)[2]])
    whole, whole_codes = kernels.nearest(x, codebook), kernels.rvq_encode(x, codebooks)
    cuts = [0, 1, 2, 5, 38, 39, 101, 230, len(x)]
    windows = [(a, b) for a, b in zip(cuts, cuts[1:]) if a < b]
    assert torch.equal(torch.cat([kernels.nearest(x[a:b], codebook) for a, b in windows]), whole)
    assert torch.equal(torch.cat([kernels.rvq_encode(x[a:b], codebooks) for a, b in windows], dim=1), whole_codes)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    assert torch.equal(kernels.nearest(x[perm], codebook), whole[perm])
    threads = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            assert torch.equal(kernels.nearest(x, codebook), whole)
            assert torch.equal(kernels.rvq_encode(x, codebooks), whole_codes)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("backend", ["numba"], indirect=True)
@pytest.mark.parametrize("name", ["d8", "d37"])
def test_codebooks_changed_in_place_are_never_served_stale(backend, name):
    """The numba kernels keep each codebook's prepared layout for later calls; a codebook
    changed in place, through torch or behind its back through a numpy view, is seen."""
    x, codebook = make_case(name)
    codebook, codebooks = codebook.clone(), make_codebooks(name, 2)
    original = codebook.clone()
    before, codes = kernels.nearest(x, codebook), kernels.rvq_encode(x, codebooks)
    codebook.mul_(-1)  # nearest of x to -c is nearest of -x to c, bit for bit
    assert torch.equal(kernels.nearest(x, codebook), kernels.nearest(-x, original))
    codebook.numpy()[:] = original.numpy()[::-1]  # no version bump: only the content tells
    assert torch.equal(kernels.nearest(x, codebook), len(codebook) - 1 - before)
    codebooks.numpy()[1] *= -1
    changed = kernels.rvq_encode(x, codebooks)
    assert torch.equal(changed[0], codes[0]) and not torch.equal(changed[1], codes[1])
    check_rvq(x, codebooks, changed, kernels.nearest)


def _encode_in_child(queue, x, codebooks):
    queue.put(kernels.rvq_encode(x, codebooks).numpy())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("backend", ["numba"], indirect=True)
def test_forked_child_gets_the_same_codes(backend, monkeypatch):
    from rvqtool.kernels import numba_cpu

    monkeypatch.setattr(numba_cpu, "_chosen", numba_cpu._tiling()._replace(parallel_work=0))
    x, _ = make_case("offset_d8")
    codebooks = make_codebooks("offset_d8", 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent = kernels.rvq_encode(x, codebooks)  # the parent has now started its helper threads
    finally:
        torch.set_num_threads(threads)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_encode_in_child, args=(queue, x, codebooks))
    child.start()
    try:
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, parent.numpy())


# ---- tilings: every size the kernels can be tuned to gives the same codes -------------------------

def tilings_to_check():
    """Each tiling cpu_layout.choose returns for the targets it tells apart (AVX-512 or not,
    small to large L2), with the codebook tile also forced to one panel and to the whole
    codebook. W = 8 tilings compiled on an AVX-512 host run the AVX2 tiling's logic."""
    from rvqtool.kernels.cpu_layout import Target, choose

    chosen = {choose(Target("test", frozenset(features), l2)) for features in (("avx2", "fma", "avx512f"), ("avx2", "fma"))
              for l2 in (256 << 10, 1 << 20, 2 << 20)}
    return sorted(chosen | {t._replace(tile_bytes=size) for t in chosen for size in (1, 1 << 30)})


def test_tiling_rule():
    """Register tiles that fit the register file (a spilling tile runs at half speed), a codebook
    tile of a quarter of L2, and the serial threshold scaled by the vector width."""
    from rvqtool.kernels.cpu_layout import Target, choose

    wide, narrow = (choose(Target("test", frozenset(f), 2 << 20)) for f in (("avx2", "fma", "avx512f"), ("avx2", "fma")))
    assert (wide.simd, wide.rows, wide.vectors, narrow.simd, narrow.rows, narrow.vectors) == (16, 6, 4, 8, 6, 2)
    assert wide.tile_bytes == narrow.tile_bytes == 512 << 10 and wide.parallel_work == 2 * narrow.parallel_work
    for t in (wide, narrow):
        assert t.row_block % t.rows == 0 and t.tile_panels(128) == (512 << 10) // (4 * 128 * t.cols)


@pytest.mark.parametrize("backend", ["numba"], indirect=True)
def test_every_tiling_gives_the_same_codes_and_distances(backend):
    """Indices, distances (bit for bit) and RVQ codes on every case of this file, for each tiling
    the tuner can choose, equal those of this machine's own tiling."""
    from rvqtool.kernels import numba_cpu

    own = numba_cpu._tiling()
    for name in sorted(CASES):
        x, codebook = (t.numpy() for t in make_case(name))
        codebooks = make_codebooks(name).numpy()
        index, dist = numba_cpu.nearest(x, codebook, True, threads=2)
        codes = numba_cpu.rvq_encode(x, codebooks, threads=2)
        for tiling in tilings_to_check():
            got_index, got_dist = numba_cpu.nearest(x, codebook, True, threads=2, tiling=tiling)
            assert np.array_equal(got_index, index) and got_dist.tobytes() == dist.tobytes(), (name, tiling)
            assert np.array_equal(numba_cpu.rvq_encode(x, codebooks, threads=2, tiling=tiling), codes), (name, tiling)
    assert own == numba_cpu._tiling()


AVX2_CHILD = """
import sys, numpy as np
sys.path.insert(0, "tests")
from test_kernels_fast import CASES, make_case, make_codebooks
from rvqtool.kernels import numba_cpu
assert numba_cpu._tiling().simd == 8, numba_cpu._tiling()
out = {}
for name in sorted(CASES):
    x, codebook = (t.numpy() for t in make_case(name))
    out[name + "/index"], out[name + "/dist"] = numba_cpu.nearest(x, codebook, True)
    out[name + "/codes"] = numba_cpu.rvq_encode(x, make_codebooks(name).numpy())
np.savez(sys.argv[1], **out)
"""
AVX2_FEATURES = "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+popcnt,+movbe,+sse4.2,-avx512f"


def _host_has_avx2() -> bool:
    try:
        import llvmlite.binding as llvm
        return bool(llvm.get_host_cpu_features().get("avx2", False))
    except ImportError:
        return False


@pytest.mark.skipif(not _host_has_avx2(), reason="needs a CPU that runs AVX2 code")
@pytest.mark.parametrize("backend", ["numba"], indirect=True)
def test_avx2_build_gives_the_same_codes(backend, tmp_path):
    """Kernels compiled for an AVX2-only CPU (numba told the target: NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES, which also pick the tiling) give this machine's indices, distances and
    codes. Run on this host, which executes AVX2 code; the object is cached like any other."""
    from rvqtool.kernels import numba_cpu

    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=AVX2_FEATURES)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", AVX2_CHILD, str(tmp_path / "avx2.npz")], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "avx2.npz")
    for name in sorted(CASES):
        x, codebook = (t.numpy() for t in make_case(name))
        index, dist = numba_cpu.nearest(x, codebook, True)
        assert np.array_equal(got[name + "/index"], index) and got[name + "/dist"].tobytes() == dist.tobytes(), name
        assert np.array_equal(got[name + "/codes"], numba_cpu.rvq_encode(x, make_codebooks(name).numpy())), name


NO_THREADING_LAYER = """
import sys, numpy as np
import numba
from rvqtool.kernels import numba_cpu
numba_cpu._chosen = numba_cpu._tiling()._replace(parallel_work=0)  # helpers for any size
x = np.random.default_rng(0).standard_normal((300, 40), dtype=np.float32)
c = np.random.default_rng(1).standard_normal((2, 50, 40), dtype=np.float32)
numba_cpu.rvq_encode(x, c, threads=2)
try:
    sys.exit(f"numba started its {numba.threading_layer()} threading layer")
except ValueError:  # not initialised
    pass
"""


def test_kernels_start_no_numba_threading_layer():
    """The kernels share out rows on threads of their own, never in numba's parallel regions
    (whose OpenMP layer spins beside torch's and kills forked children). A fresh process, so
    that nothing else in the test session has started a layer."""
    pytest.importorskip("numba")
    proc = subprocess.run([sys.executable, "-c", NO_THREADING_LAYER], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:] or proc.returncode


@pytest.mark.parametrize("backend", ["numba"], indirect=True)
def test_concurrent_callers_get_the_same_codes(backend, monkeypatch):
    """Calls from several Python threads at once share the helper pool; each has its own
    counter of blocks, so none waits for or disturbs another."""
    import threading

    from rvqtool.kernels import numba_cpu

    monkeypatch.setattr(numba_cpu, "_chosen", numba_cpu._tiling()._replace(parallel_work=0))
    x, codebook = make_case("d37")
    want = kernels.nearest(x, codebook)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(torch.equal(kernels.nearest(x, codebook), want))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 15 and all(results)


def test_kernel_cache_dir_falls_back_when_nothing_is_writable(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    from rvqtool.kernels import numba_cpu

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba_cpu, "_writable_dir", lambda path: False)
    monkeypatch.setattr(numba_cpu.tempfile, "gettempdir", lambda: str(tmp_path))
    chosen = Path(numba_cpu._cache_dir())
    assert chosen.parent == tmp_path and chosen.is_dir() and not chosen.stat().st_mode & 0o022
    # someone else's (or a world-writable) directory is never used: code is loaded from it
    os.chmod(chosen, 0o777)
    assert Path(numba_cpu._cache_dir()) != chosen


def test_kernel_cache_dir_named_by_numba_is_created(tmp_path, monkeypatch):
    """A NUMBA_CACHE_DIR that does not exist yet is made (as numba does), not left so that every
    process compiles the kernels again."""
    pytest.importorskip("numba")
    from rvqtool.kernels import numba_cpu

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "new" / "cache"))
    assert numba_cpu._cache_dir() == str(tmp_path / "new" / "cache") and (tmp_path / "new" / "cache").is_dir()


def test_kernels_that_fail_to_compile_fall_back_with_a_warning(monkeypatch):
    """A compile that fails (NUMBA_DISABLE_JIT=1, a numba that rejects the source) makes the
    kernels unavailable, so the dispatcher uses the torch reference instead of failing every call."""
    pytest.importorskip("numba")
    from rvqtool.kernels import numba_cpu

    def broken():
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(numba_cpu, "_library", broken)
    with pytest.warns(RuntimeWarning, match="cannot compile"):
        assert numba_cpu.available() is False


def test_damaged_kernel_cache_files_are_not_loaded(tmp_path):
    pytest.importorskip("numba")
    from rvqtool.kernels import numba_cpu

    path = str(tmp_path / "k.bin")
    built = {name: (f"sym_{name}", f"object of {name}".encode()) for name in numba_cpu.layout.ENTRY_POINTS}
    numba_cpu._write(path, built)
    assert numba_cpu._read(path) == built and [p.name for p in tmp_path.iterdir()] == ["k.bin"]
    numba_cpu._write(str(tmp_path / "other.bin"), {"a": ("sym_a", b"\x7fELF first")})
    assert numba_cpu._read(str(tmp_path / "other.bin")) is None  # other entry points: another build
    (tmp_path / "other.bin").unlink()
    data = bytearray(Path(path).read_bytes())
    data[-3] ^= 1
    Path(path).write_bytes(bytes(data))
    assert numba_cpu._read(path) is None
    Path(path).write_bytes(b"not json\n" + bytes(data))
    assert numba_cpu._read(path) is None
    assert numba_cpu._read(str(tmp_path / "missing.bin")) is None


LOADED_WITHOUT_NUMBA = """
import sys, numpy as np
from rvqtool.kernels import numba_cpu
x = np.random.default_rng(0).standard_normal((300, 40), dtype=np.float32)
c = np.random.default_rng(1).standard_normal((2, 50, 40), dtype=np.float32)
low = np.random.default_rng(2).standard_normal((2, 60, 8), dtype=np.float32)
np.save(sys.argv[1], np.concatenate([numba_cpu.rvq_encode(x, c, threads=2), numba_cpu.rvq_encode(x[:, :8].copy(), low)]))
if "numba" in sys.modules:
    sys.exit("numba was imported")
"""


def test_compiled_kernels_run_in_a_process_without_numba(tmp_path):
    """The point of keeping the compiled object: a later process loads it and never imports
    numba (whose start costs ~0.6 s). This process's object is copied into an empty cache; a
    fresh process on that cache must load it without importing numba, with the reference's codes."""
    pytest.importorskip("numba")
    from rvqtool.kernels import numba_cpu

    numba_cpu._library()  # this session's object: copied, so the first child needn't compile
    source = Path(numba_cpu._cache_dir())
    for f in source.glob("numba-kernels-*.bin"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", LOADED_WITHOUT_NUMBA, str(tmp_path / "codes.npy")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:] or proc.stdout
    got = np.load(tmp_path / "codes.npy")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((300, 40), dtype=np.float32))
    c = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 50, 40), dtype=np.float32))
    low = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 60, 8), dtype=np.float32))
    want = torch.cat([reference.rvq_encode(x, c), reference.rvq_encode(x[:, :8].contiguous(), low)])
    np.testing.assert_array_equal(got, want.numpy())


# ---- Triton, in interpreter mode, in a subprocess ---------------------------------------------

HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.fixture(scope="module")
def triton_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("triton") / "results.pt"
    env = dict(os.environ, TRITON_INTERPRET="1", RVQTOOL_KERNELS="triton")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(out)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("name", TRITON_CASES)
def test_triton_interpreter_exactness(triton_results, name):
    x, codebook = make_case(name)
    result = triton_results[name]
    assert result["backend"] == "triton"
    check_exactness(x, codebook, result["index"], result["dist"], CASES[name][3])
    assert torch.equal(result["windowed"], result["index"])  # windows give the same indices
    # rvq_encode equals Triton's nearest level by level (run in the subprocess)
    assert torch.equal(result["codes"], torch.stack(result["levels"]))


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("name", TRITON_HALF_CASES)
def test_triton_interpreter_half_precision_inputs(triton_results, name, dtype):
    """fp16/bf16 inputs, float32 accumulation: the same rule on the rounded values; rvq_encode
    (residual kept in the input dtype) equals nearest level by level."""
    x, codebook = (t.to(getattr(torch, dtype)) for t in make_case(name))
    result = triton_results[f"{name}/{dtype}"]
    assert result["dist"].dtype == torch.float32
    check_exactness(x, codebook, result["index"], result["dist"], CASES[name][3])
    assert torch.equal(result["codes"], torch.stack(result["levels"]))


def _triton_main(path: str) -> None:
    """Run in a subprocess with TRITON_INTERPRET=1: Triton's answers for TRITON_CASES."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    results = {}
    for name in TRITON_CASES:
        x, codebook = make_case(name)
        index, dist = kernels.nearest(x, codebook, return_distances=True)
        cuts = sorted({0, min(1, len(x)), len(x) // 3, min(len(x) // 3 + 17, len(x)), len(x)})
        windowed = torch.cat([kernels.nearest(x[a:b], codebook) for a, b in zip(cuts, cuts[1:]) if a < b] or [index])
        codebooks = make_codebooks(name, 2)
        codes = kernels.rvq_encode(x, codebooks)
        levels, residual = [], x.clone()
        for level in range(len(codebooks)):
            levels.append(kernels.nearest(residual, codebooks[level]))
            residual -= codebooks[level][levels[-1]]
        results[name] = {"backend": kernels.backend_for(x), "index": index, "dist": dist, "windowed": windowed,
                         "codebooks": codebooks, "codes": codes, "levels": levels}
    from rvqtool.kernels import triton_gpu

    for name in TRITON_HALF_CASES:
        for dtype in HALF_DTYPES:
            x, codebook = (t.to(getattr(torch, dtype)) for t in make_case(name))
            codebooks = make_codebooks(name, 2).to(x.dtype)
            index, dist = triton_gpu.nearest(x, codebook, return_distances=True)
            levels, residual = [], x.clone()
            for level in range(len(codebooks)):
                levels.append(triton_gpu.nearest(residual, codebooks[level]))
                residual -= codebooks[level][levels[-1]]
            results[f"{name}/{dtype}"] = {"index": index, "dist": dist, "codes": triton_gpu.rvq_encode(x, codebooks),
                                          "levels": levels}
    torch.save(results, path)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _triton_main(sys.argv[1])
