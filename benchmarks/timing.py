"""Timing shared by the benchmark scripts (each puts this folder first on sys.path)."""
from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> tuple[float, object]:
    """Best of `repeats` timed calls after one untimed warm-up (compile, cache load, allocator),
    and the last call's result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = clock()
        out = fn()
        times.append(clock() - start)
    return min(times), out


def best_times_interleaved(fns: list[Callable[[], object]], repeats: int,
                           clock: Callable[[], float] = time.perf_counter) -> list[tuple[float, object]]:
    """`best_time` of each of `fns`, their calls taking turns (one untimed warm-up each, then
    `repeats` rounds of one call each): sides compared this way see the same load and the same
    allocator state. Timing one side's calls first moved a ratio by up to a quarter on the 2-core
    machine (most likely the allocator: large tensors on fresh or on reused pages)."""
    results = [fn() for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            results[i] = fn()
            best[i] = min(best[i], clock() - start)
    return list(zip(best, results))


def versus_reference(label: str, ours_model, reference_encode: Callable, reference_decode: Callable, wav,
                     n_q: int, seconds: float, threads_list: list[int], repeats: int, clock: Callable[[], float],
                     same: Callable[[object, object], float]) -> None:
    """Print one markdown row per thread count: encode and decode x real time, ours (through the
    model interface) against a reference package on the same weights, timed in turns
    (`best_times_interleaved`), and the share of equal codes (`same(ours, theirs)`), measured on
    the codes each side made."""
    import torch

    for threads in threads_list:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            (t_ref_enc, theirs), (t_enc, codes) = best_times_interleaved(
                [lambda: reference_encode(wav), lambda: ours_model.quantize(ours_model.encode_latents(wav), n_q)],
                repeats, clock)
            (t_ref_dec, _), (t_dec, _) = best_times_interleaved(
                [lambda: reference_decode(theirs), lambda: ours_model.decode_latents(ours_model.dequantize(codes))],
                repeats, clock)
        print(f"| {label} | {threads} | {seconds / t_enc:.1f} / {seconds / t_ref_enc:.1f} ({t_ref_enc / t_enc:.2f}x) | "
              f"{seconds / t_dec:.1f} / {seconds / t_ref_dec:.1f} ({t_ref_dec / t_dec:.2f}x) | {same(codes, theirs):.2%} |",
              flush=True)
