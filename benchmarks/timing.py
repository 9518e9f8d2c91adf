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
