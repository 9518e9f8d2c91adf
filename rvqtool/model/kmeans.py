"""K-means for codebook initialisation: k-means++ seeding, then Lloyd iterations on the kernels."""
from __future__ import annotations

import torch

from rvqtool import kernels

SEEDING_SAMPLE_PER_CODE = 16


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k seeds drawn with probability proportional to squared distance to the seeds so far.

    Uses a greedy-free single draw per seed; with fewer than k distinct points, points repeat and
    later Lloyd steps (and dead-code restarts in training) spread them out. Each step is one
    matrix-vector product (||x||^2 - 2 x.c + ||c||^2) and one draw from the cumulative sum:
    elementwise (x - c)^2 and torch.multinomial made seeding 1024 codes cost 10x the Lloyd
    iterations (benchmarks/kmeans.py)."""
    n = x.shape[0]
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    sq_norms = (x * x).sum(dim=1)
    best = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    pick = int(torch.randint(n, (1,), generator=generator, device="cpu"))
    for i in range(k):
        centroids[i] = x[pick]
        distance = torch.addmv(sq_norms, x, centroids[i], alpha=-2.0).add_(sq_norms[pick]).clamp_(min=0)
        best = torch.minimum(best, distance)
        best[pick] = 0
        if i + 1 == k:
            break
        cumulative = torch.cumsum(best.double(), 0)
        total = float(cumulative[-1])
        draw = float(torch.rand((), generator=generator, dtype=torch.float64))
        if total <= 0:
            pick = min(int(draw * n), n - 1)
        else:
            target = torch.tensor([draw * total], dtype=torch.float64, device=x.device)
            pick = min(int(torch.searchsorted(cumulative, target, right=True)), n - 1)
    return centroids


def kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0,
           history: list[dict] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids [k, D] and cluster sizes [k] of x [N, D]; empty clusters are re-seeded from
    the points farthest from their centroid, so every code ends up used when N >= k.

    Seeds are drawn from at most SEEDING_SAMPLE_PER_CODE * k random points: on 65536 x 128 with
    k = 1024 that cuts seeding from ~19 s to ~2 s for 1.6 % more final distortion (still ~10 %
    below faiss's random seeding; benchmarks/kmeans.py).

    `history`, when given, receives per iteration the mean squared distance of the points to
    the centroids they were assigned to (before that iteration's update) and how many empty
    clusters were re-seeded."""
    generator = torch.Generator().manual_seed(seed)
    candidates = x
    if len(x) > SEEDING_SAMPLE_PER_CODE * k:
        candidates = x[torch.randperm(len(x), generator=generator)[:SEEDING_SAMPLE_PER_CODE * k].to(x.device)]
    centroids = kmeans_plus_plus(candidates, k, generator)
    counts = torch.zeros(k, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        assign, dist = kernels.nearest(x, centroids, return_distances=True)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        used = counts > 0
        centroids[used] = sums[used] / counts[used, None]
        empty = (~used).nonzero().flatten()
        if len(empty):
            far = dist.topk(min(len(empty), len(dist))).indices
            centroids[empty[:len(far)]] = x[far]
        if history is not None:
            history.append({"distortion": float(dist.mean()), "reseeded": len(empty)})
    return centroids, counts
