"""Nearest-codebook search and residual quantisation on the CPU: the numba-compiled kernels of
`numba_kernels`, run without importing numba.

A process that imports numba and loads its on-disk cache pays ~0.6 s before the first call
(numba's import, then its typing registries, which import scipy), more than the kernels save
on a short file. So numba is used as a compiler only: once per machine (and per version of the
kernels, numba and CPU) it compiles the kernels' C entry points (`numba_kernels.build`, ~10 s)
into object code kept on disk; every process then loads that code with llvmlite, numba's code
generator (~30 ms), and calls it through ctypes, which releases the GIL so that our own helper
threads run the kernels side by side. See `_library`.

Kernels' invariants (a row's code depends on that row and the codebook alone, lowest index on
ties): `numba_kernels`.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import NamedTuple

import numpy as np

from . import cpu_layout as layout


# ---- the compiled library ------------------------------------------------------------------------

def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _private_tmp_dir() -> str:
    """A directory under the temp dir that only this user can write: code is loaded from it,
    so a directory someone else could plant files in must not be used."""
    path = os.path.join(tempfile.gettempdir(), f"rvqtool-kernels-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="rvqtool-kernels-")


def _cache_dir() -> str:
    """Where the compiled kernels are kept: NUMBA_CACHE_DIR if set (where the user keeps numba's
    compiled code), else next to this file (`__pycache__/`, as numba would), else the user's
    cache dir, else a private temp dir (a read-only install with no writable home)."""
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen:
        _writable_dir(chosen)  # created if missing, as numba does: else every process compiles
        return chosen
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    user = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rvqtool")
    for path in (here, user):
        if _writable_dir(path):
            return path
    return _private_tmp_dir()


def _key(tiling: layout.Tiling) -> str:
    """What the object code depends on: the kernels' source, the compiler, the CPU and the tiling's
    compiled sizes (chosen from the CPU, or asked for)."""
    import llvmlite.binding as llvm

    digest = hashlib.sha256()
    for module in ("numba_kernels.py", "cpu_layout.py"):
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), module), "rb") as f:
            digest.update(f.read())
    # numba's settings (NUMBA_OPT, NUMBA_CPU_NAME, NUMBA_BOUNDSCHECK, ...) shape the code it emits
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("NUMBA_") and k != "NUMBA_CACHE_DIR"]
    for part in (metadata.version("numba"), metadata.version("llvmlite"), sys.version, llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten(), repr(tiling.compiled), *settings):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:24]


def _read(path: str) -> dict | None:
    """{entry: (symbol, object code)} from a file written by `_write`, or None when it is
    missing, damaged or holds other entry points than cpu_layout.ENTRY_POINTS."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.readline())
            payload = f.read()
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        return None
    if set(header.get("entries", ())) != set(layout.ENTRY_POINTS):
        return None
    return {name: (symbol, payload[start:start + size]) for name, (symbol, start, size) in header["entries"].items()}


def _write(path: str, built: dict) -> None:
    """One file: a JSON header line (entries, payload hash), then the objects; written to a
    temp file and renamed, so a reader never sees half of it."""
    entries, payload, start = {}, b"", 0
    for name, (symbol, code) in built.items():
        entries[name] = (symbol, start, len(code))
        payload += code
        start += len(code)
    header = json.dumps({"entries": entries, "sha256": hashlib.sha256(payload).hexdigest()}).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + payload)
        os.chmod(tmp, 0o644)  # like any compiled file beside the source: others may load it
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


_CTYPES = {"void": None, "i32": ctypes.c_int32, "i64": ctypes.c_int64,
           "f32*": ctypes.c_void_p, "u32*": ctypes.c_void_p, "i64*": ctypes.c_void_p}
_UNREACHED = ("NRT_Free", "NRT_MemInfo_call_dtor", "numba_do_raise", "numba_gil_ensure", "numba_gil_release",
              "numba_runtime_build_excinfo_struct", "numba_unpickle")


def _load(built: dict) -> tuple[dict, list]:
    """({entry: ctypes function}, the engines holding the code) for objects from `build`.

    The objects name a few numba runtime functions on the error paths of numba's C wrappers,
    which the kernels never take; where numba is not loaded they resolve to abort(), so that a
    path thought impossible stops the process rather than running on."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    abort = ctypes.cast(ctypes.CDLL(None).abort, ctypes.c_void_p).value
    for symbol in _UNREACHED:
        if not llvm.address_of_symbol(symbol):
            llvm.add_symbol(symbol, abort)
    target = llvm.Target.from_default_triple().create_target_machine()
    functions, engines = {}, []
    for name, (symbol, code) in built.items():
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target)
        engine.add_object_file(llvm.ObjectFileRef.from_data(code))
        engine.finalize_object()
        result, *args = layout.ENTRY_POINTS[name]
        functions[name] = ctypes.CFUNCTYPE(_CTYPES[result], *(_CTYPES[a] for a in args))(engine.get_function_address(symbol))
        engines.append(engine)
    return functions, engines


def _build_once(path: str, tiling: layout.Tiling) -> dict:
    """Compile the kernels and keep them at `path`, holding a lock beside it, so that the
    workers of a job started on a fresh machine wait for one compile instead of each doing it."""
    try:
        lock = open(path + ".lock", "a")
    except OSError:
        lock = None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            built = _read(path)  # another process may have built it while we waited
            if built is not None:
                return built
        from . import numba_kernels

        built = numba_kernels.build(tiling)
        try:
            _write(path, built)
        except OSError:
            pass  # not kept: the next process compiles again
        return built
    finally:
        if lock is not None:
            lock.close()  # releases the lock


_lock = threading.Lock()
_chosen: layout.Tiling | None = None
_libraries: dict = {}  # tiling.compiled -> {entry: ctypes function}
_engines: list = []  # the code lives as long as these do


def _tiling() -> layout.Tiling:
    """This machine's tiling (cpu_layout.choose for the compile target)."""
    global _chosen
    if _chosen is None:
        _chosen = layout.choose(layout.target())
    return _chosen


def _library(tiling: layout.Tiling | None = None) -> dict:
    """The kernels' entry points as ctypes functions, for `tiling` (default: this machine's):
    loaded from the disk cache, or compiled by numba (once per machine and tiling) and written
    there first."""
    tiling = tiling or _tiling()
    functions = _libraries.get(tiling.compiled)
    if functions is not None:  # every kernel call comes here: no lock once loaded
        return functions
    with _lock:
        if tiling.compiled not in _libraries:
            path = os.path.join(_cache_dir(), f"numba-kernels-{_key(tiling)}.bin")
            functions, engines = _load(_read(path) or _build_once(path, tiling))
            _engines.extend(engines)
            _libraries[tiling.compiled] = functions  # published whole, after its code is in place
    return _libraries[tiling.compiled]


def available() -> bool:
    """Whether the kernels can run here: numba to compile them (installed with rvqtool; a
    broken install falls back to the torch reference), llvmlite to load them. A compile that
    fails (NUMBA_DISABLE_JIT=1, say) also falls back, with a warning, rather than failing every
    encode."""
    try:
        _library()
    except ImportError:
        return False
    except Exception as error:  # noqa: BLE001 - numba's and llvmlite's errors have no common base
        first_line = (str(error).strip().splitlines() or [""])[0]
        warnings.warn(f"rvqtool: CPU kernels unavailable ({type(error).__name__}: {first_line}); "
                      "using the torch reference", RuntimeWarning, stacklevel=2)
        return False
    return True


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


# ---- small helpers over the library --------------------------------------------------------------

def _sq_norms(rows: np.ndarray) -> np.ndarray:
    """||row||^2 of each row of C-contiguous float32 [M, D], with the kernels' own arithmetic."""
    out = np.empty(rows.shape[0], np.float32)
    _library()["sq_norms"](_address(rows), rows.shape[0], rows.shape[1], _address(out))
    return out


def _all_finite(a: np.ndarray) -> bool:
    """No NaN or inf in the C-contiguous float32 array `a`."""
    return bool(_library()["all_finite"](_address(a), a.size))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """C-contiguous float32 arrays of one shape hold the same bits."""
    return bool(_library()["same_bits"](_address(a), _address(b), a.size))


# ---- threads ------------------------------------------------------------------------------------
# The kernels run on this thread and on helper threads of our own pool: each thread claims the
# next block of rows from a shared counter (an atomic add) until none is left. So a thread
# slowed by something else on the machine (on 2 cores, another process, or torch's OpenMP
# workers spinning for milliseconds after each torch op) simply claims fewer blocks, where a
# static split waits for the slowest. No numba threading layer, no OpenMP pool spinning beside
# torch's, nothing a forked child cannot use, no lock around calls. A row's code never depends
# on which thread computed it.

_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:  # a forked child has none of its parent's threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _run(kernel, args: tuple, scratch, blocks: int, threads: int | None, serial: bool) -> None:
    """kernel(*args, counter, *scratch()) on this thread and, unless `serial` (too little work
    for helpers to pay off), up to `threads` - 1 helpers at once, each with scratch buffers of
    its own."""
    global _pool
    counter = np.zeros(1, np.int64)
    helpers = 0 if serial else min(threads or os.cpu_count() or 1, blocks) - 1

    def call() -> None:
        buffers = scratch()
        kernel(*args, _address(counter), *map(_address, buffers))

    futures = []
    if helpers > 0:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="rvqtool-kernels")
        futures = [_pool.submit(call) for _ in range(helpers)]
    call()
    for future in futures:
        future.result()


# ---- prepared codebooks -------------------------------------------------------------------------

class Prepared(NamedTuple):
    """Codebooks [L, K, D] laid out for the kernels of one tiling: a copy of the codebooks (the
    residual update reads the chosen rows), the codes as the path reads them ([L, Kp / cols, D,
    cols] panels, K padded to a multiple of cols, or [L, K, width] with D padded) and their
    norms ([L, Kp], padding codes +inf, which never win)."""
    codebooks: np.ndarray
    codes: np.ndarray
    norms: np.ndarray
    width: int
    tiling: layout.Tiling


def _prepare(codebooks: np.ndarray, tiling: layout.Tiling) -> Prepared:
    levels, k, dim = codebooks.shape
    width = layout.width(dim, k)
    own = codebooks.copy()
    norms = np.stack([_sq_norms(c) for c in own]) if levels else np.zeros((0, k), np.float32)
    if width:
        codes = np.zeros((levels, k, width), np.float32)
        codes[:, :, :dim] = own
        return Prepared(own, codes, norms, width, tiling)
    cols, kp = tiling.cols, tiling.padded(k)
    padded = np.zeros((levels, kp, dim), np.float32)
    padded[:, :k] = own
    codes = np.ascontiguousarray(padded.reshape(levels, kp // cols, cols, dim).transpose(0, 1, 3, 2))
    padded_norms = np.full((levels, kp), np.inf, np.float32)
    padded_norms[:, :k] = norms
    return Prepared(own, codes, padded_norms, 0, tiling)


# The codec quantises window after window with the same codebooks: their layout is kept for the
# next call, found again by content (a bit-for-bit comparison costs ~1/15 of preparing), so that
# a codebook changed in place, by any means, is never served stale.
_PREPARED_SLOTS, _PREPARED_BYTES = 4, 64 << 20
_prepared: list = []  # most recently used last


_prepared_lock = threading.Lock()  # concurrent callers share the list


def _prepared_for(codebooks: np.ndarray, tiling: layout.Tiling) -> Prepared:
    """prepare(codebooks, tiling), reused while the same bits come back; raises on NaN or inf."""
    with _prepared_lock:
        for entry in reversed(_prepared):
            if entry.tiling.compiled == tiling.compiled and entry.codebooks.shape == codebooks.shape and _same_bits(entry.codebooks, codebooks):
                return entry
    if not _all_finite(codebooks):
        raise ValueError("x or codebook holds NaN or inf")
    prepared = _prepare(codebooks, tiling)
    with _prepared_lock:
        _prepared.append(prepared)
        while len(_prepared) > _PREPARED_SLOTS or sum(a.nbytes for e in _prepared for a in e[:3]) > _PREPARED_BYTES:
            _prepared.pop(0)
    return prepared


# ---- entry points (numpy in, numpy out; shapes and dtypes are the dispatcher's job) -------------
# `tiling` picks another tiling than this machine's (tests compare them; benchmarks time them).

def nearest(x: np.ndarray, codebook: np.ndarray, return_distances: bool = False, threads: int | None = None,
            tiling: layout.Tiling | None = None):
    """x [N, D], codebook [K, D] float32 C-contiguous -> indices int64 [N] (and squared
    distances float32 [N]). Raises ValueError on NaN or inf."""
    codes, best = _encode(x, codebook[None], threads, tiling or _tiling())
    if not return_distances:
        return codes[0]
    return codes[0], best + _sq_norms(x)


def rvq_encode(x: np.ndarray, codebooks: np.ndarray, threads: int | None = None,
               tiling: layout.Tiling | None = None) -> np.ndarray:
    """x [N, D], codebooks [L, K, D] float32 C-contiguous -> codes int64 [L, N]. Raises
    ValueError on NaN or inf."""
    return _encode(x, codebooks, threads, tiling or _tiling())[0]


def _encode(x: np.ndarray, codebooks: np.ndarray, threads: int | None, tiling: layout.Tiling):
    """(codes [L, N], the last level's distances without ||x||^2 [N])."""
    n, dim = x.shape
    levels, k, _ = codebooks.shape
    codes = np.zeros((levels, n), np.int64)
    best = np.empty(n, np.float32)
    if not _all_finite(x):
        raise ValueError("x or codebook holds NaN or inf")
    prepared = _prepared_for(codebooks, tiling)
    if not (n and levels and k):
        return codes, best
    width = prepared.width
    if width:
        lanes = tiling.low_rows(width)
        kernel = _library(tiling)[f"rvq_low{width}"]
        args = (_address(x), n, dim, _address(prepared.codebooks), levels, k, _address(prepared.codes),
                _address(prepared.norms), _address(codes), _address(best))

        def scratch():
            return np.empty((1, lanes), np.float32), np.empty((1, lanes), np.float32), np.empty((width, lanes), np.float32)
    else:
        lanes = tiling.row_block
        kernel = _library(tiling)["rvq_general"]
        args = (_address(x), n, dim, _address(prepared.codebooks), levels, k, _address(prepared.codes),
                prepared.norms.shape[1], tiling.tile_panels(dim), _address(prepared.norms), _address(codes), _address(best))

        def scratch():
            return np.empty(lanes, np.float32), np.empty(lanes, np.int64), np.empty((lanes, dim), np.float32)
    _run(kernel, args, scratch, -(-n // lanes), threads, n * k * dim * levels < tiling.parallel_work)
    return codes, best
