"""K-means for codebook initialisation: k-means++ seeding, then Lloyd iterations on the kernels."""
from __future__ import annotations

import torch

from rvqtool import kernels


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k seeds drawn with probability proportional to squared distance to the seeds so far.

    Uses a greedy-free single draw per seed; with fewer than k distinct points, points repeat and
    later Lloyd steps (and dead-code restarts in training) spread them out."""
    n = x.shape[0]
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centroids[0] = x[torch.randint(n, (1,), generator=generator, device="cpu").item()]
    best = ((x - centroids[0]) ** 2).sum(dim=1)
    for i in range(1, k):
        total = best.sum()
        if total <= 0:
            pick = torch.randint(n, (1,), generator=generator, device="cpu").item()
        else:
            pick = torch.multinomial((best / total).cpu(), 1, generator=generator).item()
        centroids[i] = x[pick]
        best = torch.minimum(best, ((x - centroids[i]) ** 2).sum(dim=1))
    return centroids


def kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0,
           history: list[dict] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids [k, D] and cluster sizes [k] of x [N, D]; empty clusters are re-seeded from
    the points farthest from their centroid, so every code ends up used when N >= k.

    `history`, when given, receives per iteration the mean squared distance of the points to
    the centroids they were assigned to (before that iteration's update) and how many empty
    clusters were re-seeded."""
    generator = torch.Generator().manual_seed(seed)
    centroids = kmeans_plus_plus(x, k, generator)
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
