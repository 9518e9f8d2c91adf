#!/usr/bin/env python3
"""Nearest-codebook kernels against their peers, all measured in one run on the same threads.

For nearest search at (N, D, K) = (4500, 128, 1024), (100000, 128, 1024), (100000, 8, 1024),
(100000, 256, 4096) and an 8-level RVQ encode of 100000 x 128 with K = 1024, one table row per
method: wall time (best of --repeats), vectors/s, effective GFLOP/s (2 N K D per level), that
rate as a share of the machine's sgemm rate measured in the same run, and how many times faster
ours is than that row (">1" = ours wins). Peers: torch.cdist + argmin, the whole-matrix torch
trick (||c||^2 - 2 x c^T, argmin, as EnCodec does), faiss IndexFlatL2 (for RVQ: 8 IndexFlatL2
searches with the residual updated in numpy, and faiss.ResidualQuantizer with beam 1), and our
torch reference (blocked matmul trick). `agree` is the share of rows whose index equals faiss's.
Then the codec: seconds of audio encoded per second with the default model, kernels vs the torch
reference. `--compile-cost` measures numba's first-call (compile) and cached-load costs in fresh
processes, and a fresh process's model load + first encode with each quantiser. `--against DIR`
adds a row for the kernels of another checkout (DIR/kernels, e.g. an older commit's `git archive`),
timed alternately with ours in the same run: a before/after comparison. Ours keeps each
codebook's prepared layout between calls, as faiss keeps its index: the first call pays it.

Usage: python benchmarks/kernels.py [--quick] [--threads 1,2] [--repeats 3] [--skip-codec] [--cpu-time] [--against DIR]
       python benchmarks/kernels.py --compile-cost
Needs faiss-cpu for the faiss rows (`pip install faiss-cpu`, in the test extras); without it
they are skipped. Numbers mean something only on an otherwise idle machine: the header prints
the load average at the start.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from rvqtool import kernels
from rvqtool.kernels import reference
from timing import best_time

try:
    import faiss
except ImportError:
    faiss = None

SIZES = [(4500, 128, 1024), (100000, 128, 1024), (100000, 8, 1024), (100000, 256, 4096)]
QUICK_SIZES = [(4500, 128, 1024), (20000, 128, 1024), (20000, 8, 1024), (10000, 256, 4096)]
RVQ = (100000, 128, 1024, 8)
QUICK_RVQ = (10000, 128, 1024, 8)


CLOCK = time.perf_counter  # --cpu-time: time.process_time
BEFORE = None  # --against DIR: that checkout's kernels package


def load_kernels(checkout: str):
    """The kernels package of another checkout (DIR/kernels), imported beside ours."""
    root = Path(checkout).resolve() / "kernels"
    spec = importlib.util.spec_from_file_location("kernels_before", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernels_before"] = module
    spec.loader.exec_module(module)
    return module


def ours_and_before(ours, before, repeats: int):
    """(ours seconds, ours result, before seconds or None): the two timed alternately, best of
    `repeats` each, so that a change in the machine's load hits both alike."""
    if before is None:
        return (*best_time(ours, repeats, CLOCK), None)
    out, _ = ours(), before()
    ours_times, before_times = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (before, before_times)):
            start = CLOCK()
            result = fn()
            times.append(CLOCK() - start)
            if fn is ours:
                out = result
    return min(ours_times), out, min(before_times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sgemm_rate(repeats: int) -> float:
    """GFLOP/s of a 2048^3 float32 matmul: the machine's ceiling for this kind of work."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds, _ = best_time(lambda: torch.mm(a, b), repeats, CLOCK)
    return 2 * 2048 ** 3 / seconds / 1e9


# ---- peers --------------------------------------------------------------------------------------

def torch_cdist(x, c):
    return torch.cdist(x, c).argmin(dim=1)


def torch_matmul_trick(x, c):
    return torch.addmm((c * c).sum(dim=1), x, c.t(), alpha=-2.0).argmin(dim=1)


def faiss_index(c: np.ndarray):
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c)
    return index


def faiss_search(index, x: np.ndarray):
    return index.search(x, 1)[1][:, 0]


def faiss_rvq_loop(indexes, codebooks: np.ndarray, x: np.ndarray):
    residual = x.copy()
    codes = np.empty((len(indexes), len(x)), np.int64)
    for level, index in enumerate(indexes):
        codes[level] = index.search(residual, 1)[1][:, 0]
        residual -= codebooks[level][codes[level]]
    return codes


def faiss_residual_quantizer(codebooks: np.ndarray):
    """faiss.ResidualQuantizer holding our codebooks, greedy (beam 1), or None if this faiss
    has no such API."""
    levels, k, d = codebooks.shape
    try:
        rq = faiss.ResidualQuantizer(d, levels, int(np.log2(k)))
        faiss.copy_array_to_vector(np.ascontiguousarray(codebooks, dtype=np.float32).ravel(), rq.codebooks)
        rq.is_trained = True
        rq.max_beam_size = 1
        rq.compute_codebook_tables()
        return rq
    except Exception:  # noqa: BLE001 - an optional peer
        return None


def unpack_rq_codes(packed: np.ndarray, levels: int, k: int) -> np.ndarray:
    """faiss's bit-packed codes (least significant bit first) -> [levels, N] (outside the timing)."""
    bits = int(np.log2(k))
    unpacked = np.unpackbits(packed, axis=1, bitorder="little")[:, :levels * bits].reshape(len(packed), levels, bits)
    return (unpacked.astype(np.int64) << np.arange(bits)).sum(axis=2).T


def torch_rvq_whole_matrix(x, codebooks):
    """EnCodec's way: per level, the whole N x K matrix, then argmin."""
    residual = x.clone()
    codes = []
    for codebook in codebooks:
        index = torch_matmul_trick(residual, codebook)
        codes.append(index)
        residual -= codebook[index]
    return torch.stack(codes)


# ---- table --------------------------------------------------------------------------------------

def row(label, seconds, vectors, flops, sgemm, ours_seconds, agree=None):
    rate = flops / seconds / 1e9
    agree_text = f"{100 * agree:5.1f}%" if agree is not None else "     -"
    return (f"| {label:<34} | {seconds * 1e3:9.1f} | {vectors / seconds / 1e6:8.3f} | {rate:7.1f} | "
            f"{100 * rate / sgemm:5.1f}% | {seconds / ours_seconds:6.2f}x | {agree_text} |")


HEADER = ("| method                             |   time ms |   Mvec/s | GFLOP/s | %sgemm | ours is |  agree |\n"
          "|------------------------------------|----------:|---------:|--------:|-------:|--------:|-------:|")


def bench_nearest(n, d, k, repeats, sgemm, seed=0):
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((n, d), dtype=np.float32)
    c_np = rng.standard_normal((k, d), dtype=np.float32)
    x, c = torch.from_numpy(x_np), torch.from_numpy(c_np)
    flops = 2.0 * n * k * d
    ours_s, ours, before_s = ours_and_before(lambda: kernels.nearest(x, c), BEFORE and (lambda: BEFORE.nearest(x, c)), repeats)
    want = None
    lines = []
    if faiss is not None:
        index = faiss_index(c_np)
        faiss_s, want = best_time(lambda: faiss_search(index, x_np), repeats, CLOCK)
    agree = (lambda got: float((np.asarray(got) == want).mean())) if want is not None else (lambda got: None)
    lines.append(row(f"ours ({kernels.backend_for(x)})", ours_s, n, flops, sgemm, ours_s, agree(ours.numpy())))
    if before_s is not None:
        lines.append(row("ours before (--against)", before_s, n, flops, sgemm, ours_s, agree(BEFORE.nearest(x, c).numpy())))
    if faiss is not None:
        lines.append(row("faiss IndexFlatL2", faiss_s, n, flops, sgemm, ours_s, 1.0))
    for label, fn in [("torch matmul trick (whole matrix)", torch_matmul_trick), ("torch.cdist + argmin", torch_cdist),
                      ("torch reference (blocked)", reference.nearest)]:
        seconds, got = best_time(lambda: fn(x, c), repeats, CLOCK)
        lines.append(row(label, seconds, n, flops, sgemm, ours_s, agree(got.numpy())))
    return lines


def bench_rvq(n, d, k, levels, repeats, sgemm, seed=1):
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((n, d), dtype=np.float32)
    cb_np = (rng.standard_normal((levels, k, d), dtype=np.float32)
             * (0.7 ** np.arange(levels, dtype=np.float32))[:, None, None])
    x, codebooks = torch.from_numpy(x_np), torch.from_numpy(cb_np)
    flops = 2.0 * n * k * d * levels
    ours_s, ours, before_s = ours_and_before(lambda: kernels.rvq_encode(x, codebooks),
                                             BEFORE and (lambda: BEFORE.rvq_encode(x, codebooks)), repeats)
    ours = ours.numpy()
    lines = []
    want = None
    if faiss is not None:
        indexes = [faiss_index(cb) for cb in cb_np]
        faiss_s, want = best_time(lambda: faiss_rvq_loop(indexes, cb_np, x_np), repeats, CLOCK)
    agree = (lambda got: float((np.asarray(got) == want).all(axis=0).mean())) if want is not None else (lambda got: None)
    lines.append(row(f"ours rvq_encode ({kernels.backend_for(x)})", ours_s, n, flops, sgemm, ours_s, agree(ours)))
    if before_s is not None:
        lines.append(row("ours before (--against)", before_s, n, flops, sgemm, ours_s,
                         agree(BEFORE.rvq_encode(x, codebooks).numpy())))
    if faiss is not None:
        lines.append(row(f"faiss {levels} x IndexFlatL2 search", faiss_s, n, flops, sgemm, ours_s, 1.0))
        rq = faiss_residual_quantizer(cb_np)
        if rq is not None:
            rq_s, packed = best_time(lambda: rq.compute_codes(x_np), repeats, CLOCK)
            lines.append(row("faiss ResidualQuantizer (beam 1)", rq_s, n, flops, sgemm, ours_s,
                             agree(unpack_rq_codes(packed, levels, k))))
    for label, fn in [("torch whole matrix per level", torch_rvq_whole_matrix), ("torch reference (blocked)", reference.rvq_encode)]:
        seconds, got = best_time(lambda: fn(x, codebooks), repeats, CLOCK)
        lines.append(row(label, seconds, n, flops, sgemm, ours_s, agree(got.numpy())))
    return lines


def bench_codec(seconds_of_audio: float, repeats: int, threads: int) -> list[str]:
    from rvqtool import load_codec

    codec = load_codec("default")
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds_of_audio * codec.sample_rate)) / codec.sample_rate
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    lines = []
    rates = {}
    for backend in ("numba", "reference"):
        os.environ["RVQTOOL_KERNELS"] = backend
        secs, codes = best_time(lambda: codec.encode(audio), repeats, CLOCK)
        rates[backend] = seconds_of_audio / secs
        name = "kernels (numba)" if backend == "numba" else "torch reference"
        lines.append(f"| {threads} | {name:<16} | {rates[backend]:8.1f} |")
    os.environ["RVQTOOL_KERNELS"] = "numba"
    lines.append(f"| {threads} | kernels / reference | {rates['numba'] / rates['reference']:8.2f}x |")
    return lines


_PROBE = (
    "import time; t0 = time.perf_counter(); import numpy as np; "
    "from rvqtool.kernels import numba_cpu as k; out = [time.perf_counter() - t0]\n"
    "for d, rvq in STEPS:\n"
    "    x = np.ones((100, d), np.float32); c = np.ones((3, 64, d), np.float32); t = time.perf_counter()\n"
    "    k.rvq_encode(x, c) if rvq else k.nearest(x, c[0]); out.append(time.perf_counter() - t)\n"
    "print(' '.join(f'{v:.2f}' for v in out))"
)


def _probe(steps, cache: str) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", f"STEPS = {steps!r}\n" + _PROBE], env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                         capture_output=True, text=True, check=True)
    return out.stdout.split(), time.perf_counter() - start


_FIRST_ENCODE = (
    "import time, numpy as np, torch; from rvqtool import load_codec; t = time.perf_counter()\n"
    "codec = load_codec('default'); audio = np.random.default_rng(0).standard_normal(5 * codec.sample_rate)\n"
    "codec.encode((0.1 * audio).astype(np.float32)); print(f'{time.perf_counter() - t:.2f}')"
)


def first_encode(backend: str, cache: str) -> str:
    """Seconds from loading the default model to the end of its first encode (5 s of audio) in
    a fresh process: what a CLI call pays on top of importing."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, RVQTOOL_KERNELS=backend)
    return subprocess.run([sys.executable, "-c", _FIRST_ENCODE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def compile_cost() -> None:
    """First calls in a process with an empty numba cache (they compile), then the same in a
    fresh process that finds the cache filled (it loads). Then the codec's case alone: a
    process whose only call is rvq_encode at D = 128."""
    steps = [(128, False), (128, True), (8, False), (8, True), (16, False)]
    labels = ["import (numpy, and torch via rvqtool)", "nearest D=128", "rvq_encode D=128", "nearest D=8", "rvq_encode D=8",
              "nearest D=16"]
    with tempfile.TemporaryDirectory() as cache:
        cold, warm = _probe(steps, cache), _probe(steps, cache)
    with tempfile.TemporaryDirectory() as cache:
        codec_cold, codec_warm = _probe([(128, True)], cache), _probe([(128, True)], cache)
    print("\n## numba compile cost (seconds; fresh processes, empty cache then the filled cache)\n")
    print("| step | first call (compiles) | cached |\n|---|---:|---:|")
    for i, label in enumerate(labels):
        print(f"| {label} | {cold[0][i]} | {warm[0][i]} |")
    print(f"| whole process (python start to exit) | {cold[1]:.2f} | {warm[1]:.2f} |")
    print(f"| codec case: a process whose only call is rvq_encode D=128 | {codec_cold[0][1]} | {codec_warm[0][1]} |")
    print(f"| ... that whole process | {codec_cold[1]:.2f} | {codec_warm[1]:.2f} |")
    with tempfile.TemporaryDirectory() as cache:
        first_encode("numba", cache)  # fills the cache
        times = {backend: [first_encode(backend, cache) for _ in range(3)] for backend in ("reference", "numba")}
    print("\n## a CLI call's first encode (load the default model, encode 5 s; fresh processes, cache filled)\n")
    print("| quantiser | seconds (3 processes) |\n|---|---|")
    for backend, values in times.items():
        print(f"| {backend} | {' '.join(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (a smoke run; not the reported table)")
    parser.add_argument("--threads", default="2", help="comma-separated thread counts, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-codec", action="store_true")
    parser.add_argument("--compile-cost", action="store_true", help="only measure numba's compile / cache-load cost")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time instead of the wall clock: on a busy machine this "
                             "tracks the work done better, but only means something with --threads 1")
    parser.add_argument("--against", metavar="DIR", help="also time the kernels of the checkout DIR (DIR/kernels), "
                        "alternately with ours: a before/after comparison in one run")
    args = parser.parse_args()
    if args.against:
        global BEFORE
        BEFORE = load_kernels(args.against)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.compile_cost:
        compile_cost()
        return
    sizes, rvq = (QUICK_SIZES, QUICK_RVQ) if args.quick else (SIZES, RVQ)
    load = os.getloadavg()
    print(f"# Nearest-codebook kernels, {datetime.now():%Y-%m-%d %H:%M}, {cpu_name()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, faiss {getattr(faiss, '__version__', 'missing')}"
          f"{', QUICK (smaller N)' if args.quick else ''}{', CPU time' if args.cpu_time else ', wall clock'}")
    from rvqtool.kernels import numba_cpu
    print(f"# kernels: {numba_cpu._tiling()}{f', against {args.against}' if args.against else ''}")
    print(f"# load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({'busy: numbers are polluted' if load[0] > 0.5 else 'quiet'})")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        if faiss is not None:
            faiss.omp_set_num_threads(threads)
        sgemm = sgemm_rate(args.repeats)
        print(f"\n## {threads} thread{'s' if threads > 1 else ''}: sgemm (2048^3, torch) {sgemm:.1f} GFLOP/s")
        for n, d, k in sizes:
            print(f"\n### nearest, N={n}, D={d}, K={k}\n\n{HEADER}")
            print("\n".join(bench_nearest(n, d, k, args.repeats, sgemm)), flush=True)
        n, d, k, levels = rvq
        print(f"\n### RVQ encode, {levels} levels, N={n}, D={d}, K={k}\n\n{HEADER}")
        print("\n".join(bench_rvq(n, d, k, levels, args.repeats, sgemm)), flush=True)
    if not args.skip_codec:
        seconds = 5.0 if args.quick else 30.0
        print(f"\n### codec: default model, {seconds:g} s of audio, encode (x real time)\n")
        print("| threads | quantiser | x real time |\n|---|---|---:|")
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            print("\n".join(bench_codec(seconds, args.repeats, threads)), flush=True)


if __name__ == "__main__":
    main()
