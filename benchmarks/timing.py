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


def versus_reference(label: str, ours_model, reference_encode: Callable, reference_decode: Callable, wav,
                     n_q: int, seconds: float, threads_list: list[int], repeats: int, clock: Callable[[], float],
                     same: Callable[[object, object], float]) -> None:
    """Print one markdown row per thread count: encode and decode x real time, ours (through the
    model interface) against a reference package on the same weights, and the share of equal codes
    (`same(ours, theirs)`), measured on the codes each side made."""
    import torch

    for threads in threads_list:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            t_ref_enc, theirs = best_time(lambda: reference_encode(wav), repeats, clock)
            t_ref_dec, _ = best_time(lambda: reference_decode(theirs), repeats, clock)
            t_enc, codes = best_time(lambda: ours_model.quantize(ours_model.encode_latents(wav), n_q), repeats, clock)
            t_dec, _ = best_time(lambda: ours_model.decode_latents(ours_model.dequantize(codes)), repeats, clock)
        print(f"| {label} | {threads} | {seconds / t_enc:.1f} / {seconds / t_ref_enc:.1f} ({t_ref_enc / t_enc:.2f}x) | "
              f"{seconds / t_dec:.1f} / {seconds / t_ref_dec:.1f} ({t_ref_dec / t_dec:.2f}x) | {same(codes, theirs):.2%} |",
              flush=True)
