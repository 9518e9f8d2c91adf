#!/usr/bin/env python3
"""The Triton kernels against torch on one GPU, and tokenize throughput with GPU batching
(issue 15 point 3; run by benchmarks/gpu_check.sh, which says how to get a GPU's minutes).

`table`: the machine's limits measured in the same run (a float32 matmul with TF32 off, which
is what the float32 kernels' `input_precision="ieee"` competes with; a bf16 matmul on the tensor
cores; a large copy for the memory bandwidth), then, at benchmarks/kernels.py's sizes, nearest
search and the 8-level RVQ encode: Triton (float32 and bf16) against `torch.cdist + argmin` and
the whole-matrix matmul trick (||c||^2 - 2 x c^T, argmin) in the same dtype. Times are the best
of --repeats, each taken with CUDA events after a warm-up call (which pays the autotuning).
Columns: GFLOP/s (2 N K D per level), the floor (the larger of FLOPs at the same-run matmul rate
and the bytes that must move, x read once and the indices written, at the copy rate) as a share
of the row's time, and how many times faster Triton is than the row. Goals: >= 2x the matmul
trick, and Triton within 2x of the floor (>= 50 %).

`tokenize`: `rvqtool.tokens.tokenize` (what `rvq tokenize --device cuda --batch-windows B` runs)
on a corpus cut from the shipped example clips, for several encoder batches, with the kernels
the torch reference (CUDA's default) and Triton; x real time, and whether the token shards
equal the first row's byte for byte.

With --device cpu (and TRITON_INTERPRET=1 in the environment) both run on tiny sizes through
Triton's interpreter: a check of the script, not a measurement.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

import kernels as cpu_table  # benchmarks/kernels.py: the sizes and the torch peers, one owner
from rvqtool.kernels import triton_gpu

TINY_SIZES = [(300, 32, 128), (200, 8, 64)]
TINY_RVQ = (300, 32, 128, 2)


def timed(fn: Callable[[], object], repeats: int, device: str) -> tuple[float, object]:
    """Best seconds of `repeats` calls after one warm-up, with CUDA events on a GPU."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        else:
            began = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - began)
    return best, out


def limits(device: str, repeats: int, quick: bool) -> dict[str, float]:
    """FLOP/s of a float32 (TF32 off) and a bf16 matmul and bytes/s of a copy, measured now."""
    n = 512 if quick else 8192
    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        seconds, _ = timed(lambda: a @ b, repeats, device)
        rates[name] = 2 * n ** 3 / seconds
    source = torch.empty((1 << 22) if quick else (1 << 30), dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds, _ = timed(lambda: target.copy_(source), repeats, device)
    rates["bytes"] = 2 * source.numel() / seconds  # read and written
    return rates


def machine(device: str) -> str:
    if device != "cuda":
        return f"{device} (Triton interpreter: timings mean nothing)"
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, triton {triton_gpu.triton.__version__}")


def matmul_trick_rvq(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    residual, codes = x.clone(), []
    for codebook in codebooks:
        index = cpu_table.torch_matmul_trick(residual, codebook)
        codes.append(index)
        residual -= codebook[index]
    return torch.stack(codes)


def table(device: str, repeats: int, quick: bool) -> Iterator[str]:
    """The table's lines, each as soon as it is measured."""
    torch.backends.cuda.matmul.allow_tf32 = False  # the default; float32 stays float32 everywhere
    rates = limits(device, repeats, quick)
    yield from [f"Machine: {machine(device)}", "",
                f"Same-run limits: float32 matmul (TF32 off) {rates['float32'] / 1e12:.1f} TFLOP/s, "
                f"bf16 matmul {rates['bfloat16'] / 1e12:.1f} TFLOP/s, copy {rates['bytes'] / 1e9:.0f} GB/s.", "",
                "| op | N | D | K | L | dtype | method | ms | GFLOP/s | floor/time | Triton is | agree |",
                "|---|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|"]
    sizes, rvq = (TINY_SIZES, TINY_RVQ) if quick else (cpu_table.SIZES, cpu_table.RVQ)
    g = torch.Generator().manual_seed(0)
    cases = [("nearest", n, d, k, 1) for n, d, k in sizes] + [("rvq", *rvq)]
    goals: list[str] = []
    for op, n, d, k, levels in cases:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(n, d, generator=g).to(device, dtype)
            scale = 0.5 ** torch.arange(levels)[:, None, None]  # residuals shrink level by level
            books = (torch.randn(levels, k, d, generator=g) * scale).to(device, dtype)
            if op == "nearest":
                methods = [("Triton", lambda: triton_gpu.nearest(x, books[0])),
                           ("torch matmul trick", lambda: cpu_table.torch_matmul_trick(x, books[0])),
                           ("torch.cdist + argmin", lambda: cpu_table.torch_cdist(x, books[0]))]
            else:
                methods = [("Triton", lambda: triton_gpu.rvq_encode(x, books)),
                           ("torch matmul trick", lambda: matmul_trick_rvq(x, books))]
            if dtype != torch.float32:
                methods = [m for m in methods if "cdist" not in m[0]]  # cdist: float32/64 only
            flops = 2.0 * n * k * d * levels
            moved = x.element_size() * n * d + 8 * n * levels
            floor = max(flops / rates["float32" if dtype == torch.float32 else "bfloat16"], moved / rates["bytes"])
            case = f"| {op} | {n} | {d} | {k} | {levels} | {str(dtype).removeprefix('torch.')} |"
            try:
                results = [(label, *timed(fn, repeats, device)) for label, fn in methods]
            except Exception as error:  # noqa: BLE001 - a first GPU run: report it and measure the rest
                yield f"{case} failed: {type(error).__name__}: {str(error).splitlines()[0][:200]} | | | | | |"
                continue
            ours_seconds, ours = results[0][1], results[0][2]
            trick_seconds = next(seconds for label, seconds, _ in results if label == "torch matmul trick")
            speedup, share = trick_seconds / ours_seconds, floor / ours_seconds
            goals.append(f"{op} N={n} D={d} K={k} L={levels} {str(dtype).removeprefix('torch.')}: "
                         f"{speedup:.2f}x the matmul trick ({'met' if speedup >= 2 else 'NOT met'}), "
                         f"{100 * share:.0f}% of the floor ({'met' if share >= 0.5 else 'NOT met'})")
            for label, seconds, got in results:
                agree = (got == ours).double().mean().item()
                yield (f"{case} {label} | {seconds * 1e3:.3f} | {flops / seconds / 1e9:.0f} | "
                       f"{100 * floor / seconds:.0f}% | {seconds / ours_seconds:.2f}x | {100 * agree:.2f}% |")
    yield from ["", "floor/time: the row's share of the bound set by the same-run matmul rate (float32 rows: "
                "TF32-off float32; bf16 rows: bf16) or the copy rate, whichever is slower. agree: rows (codes) "
                "equal to Triton's.", "", "Goals (Triton >= 2x the matmul trick, within 2x of the floor):", ""]
    yield from (f"- {goal}" for goal in goals)


def tokenize_rows(device: str, minutes: float, batches: list[int]) -> Iterator[str]:
    """x real time of the token job on `device` for each (kernels, batch), shards compared; each
    line as soon as it is measured."""
    from tokenize_speed import make_corpus

    from rvqtool.tokens import RunOptions, TokenOptions, tokenize

    seconds_per_file = 30.0 if minutes >= 5 else 4.0
    files = max(2, round(minutes * 60 / seconds_per_file))
    yield from [f"Corpus: {files} files of {seconds_per_file:.0f} s cut from examples/audio (half 24 kHz WAV, "
                "half 44.1 kHz FLAC), default model, one worker, the reader thread decoding and resampling on "
                "the CPU; each kernel backend warmed up first on two more files (CUDA start, autotuning).", "",
                "| kernels | batch windows | wall s | x real time | shards equal to the first row's |",
                "|---|--:|--:|--:|---|"]
    first: dict[str, bytes] | None = None
    previous = os.environ.get("RVQTOOL_KERNELS")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus, warm = Path(tmp) / "corpus", Path(tmp) / "warm"
            corpus.mkdir()
            warm.mkdir()
            make_corpus(corpus, files, seconds_per_file)
            make_corpus(warm, 2, seconds_per_file)
            for backend in ("reference", "triton"):
                os.environ["RVQTOOL_KERNELS"] = backend
                tokenize([str(warm)], Path(tmp) / f"warm-{backend}", TokenOptions(), RunOptions(batch_windows=batches[-1]),
                         "default", device)
                for batch in batches:
                    out = Path(tmp) / f"{backend}-{batch}"
                    began = time.perf_counter()
                    summary = tokenize([str(corpus)], out, TokenOptions(), RunOptions(batch_windows=batch), "default", device)
                    wall = time.perf_counter() - began
                    shards = {p.name: p.read_bytes() for p in sorted(out.glob("shard-*")) if p.suffix != ".json"}
                    first = shards if first is None else first
                    same = ("no shards written" if not shards else "yes" if shards == first
                            else f"no ({sum(shards.get(k) != v for k, v in first.items())} files differ)")
                    yield f"| {backend} | {batch} | {wall:.2f} | {summary.seconds / wall:.0f}x | {same} |"
    finally:
        if previous is None:
            os.environ.pop("RVQTOOL_KERNELS", None)
        else:
            os.environ["RVQTOOL_KERNELS"] = previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["table", "tokenize"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU check of the script)")
    parser.add_argument("--minutes", type=float, default=20.0, help="tokenize: minutes of audio")
    parser.add_argument("--batches", default="1,16,64", help="tokenize: encoder windows per call")
    parser.add_argument("-o", "--output", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(1, "error: no CUDA device here (use --device cpu with TRITON_INTERPRET=1 to check the script)\n")
    if not triton_gpu.available():
        parser.exit(1, "error: Triton cannot run here (not installed, or no GPU and TRITON_INTERPRET unset)\n")
    if args.what == "table":
        lines = table(args.device, args.repeats, args.quick)
    else:
        lines = tokenize_rows(args.device, args.minutes, [int(b) for b in args.batches.split(",")])
    with open(args.output, "w") as out:  # line by line: a run cut off by its time limit keeps its rows
        for line in lines:
            print(line, file=out, flush=True)
            print(line, flush=True)


if __name__ == "__main__":
    main()
