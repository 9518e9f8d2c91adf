#!/usr/bin/env python3
"""Our k-means (what `rvq train-codebook` runs per level) against faiss.Kmeans on the same data,
the same number of Lloyd iterations and the same threads: wall time and final distortion.

Ours: k-means++ seeding (on at most 16 points per code), then Lloyd iterations whose assignment step is `rvqtool.kernels.nearest`
(the numba kernels, the codec's CPU default; `--kernels numba,reference` adds the torch reference). faiss:
`faiss.Kmeans` with its defaults (random seeds, no k-means++), subsampling turned off so that it
sees every vector. Distortion is measured the same way for both, afterwards: the mean squared
distance of every vector to its nearest centroid (float64 sums). Each row is the best of
--repeats runs; rows alternate so that load on a shared machine hits both alike.

Data: a Gaussian mixture (default: N=65536, D=128, K=1024, as a codec's level), a .npy [N, D]
file (--features), or the default model's encoder latents of an audio directory (--audio).

Usage: python benchmarks/kmeans.py [--quick] [--threads 1,2] [--iterations 20] [--repeats 2]
       python benchmarks/kmeans.py --audio /work/data/heldout --codebook-size 256
Needs faiss-cpu (`pip install -e '.[bench]'`); numbers mean something only on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from rvqtool.model.kmeans import kmeans
from timing import best_time


def mixture(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n vectors around 2·sqrt(n) centres with per-centre scales: clustered, not separable."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((int(2 * np.sqrt(n)), dim)).astype(np.float32) * 2
    which = rng.integers(len(centres), size=n)
    scale = rng.uniform(0.3, 1.5, size=(len(centres), 1)).astype(np.float32)
    return centres[which] + scale[which] * rng.standard_normal((n, dim)).astype(np.float32)


def audio_latents(directory: str) -> np.ndarray:
    from rvqtool import load_codec
    from rvqtool.codebook_training import encoder_features

    return encoder_features(load_codec("default"), [directory]).numpy()


def distortion(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean squared distance of every row of x to its nearest centroid, summed in float64."""
    from rvqtool.kernels import reference

    _, dist = reference.nearest(torch.from_numpy(x).double(), torch.from_numpy(centroids).double(), True)
    return float(dist.clamp(min=0).mean())


def ours(x: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    return kmeans(torch.from_numpy(x), k, iterations, seed)[0].numpy()


def ours_seeding(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The seeds alone: k-means with no Lloyd iteration."""
    return kmeans(torch.from_numpy(x), k, 0, seed)[0].numpy()


def faiss_kmeans(x: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, max_points_per_centroid=len(x) // k + 1,
                      min_points_per_centroid=1, verbose=False)
    km.train(x)
    return km.centroids.copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--codebook-size", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--kernels", default="numba", help="comma list of our kernels to time: reference, numba")
    ap.add_argument("--features", help=".npy [N, D] to cluster instead of the mixture")
    ap.add_argument("--audio", help="cluster the default model's encoder latents of this directory")
    ap.add_argument("--quick", action="store_true", help="N=8192, D=32, K=256, 10 iterations, 1 repeat: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.n, args.dim, args.codebook_size, args.iterations, args.repeats = 8192, 32, 256, 10, 1
    try:
        import faiss
    except ImportError:
        sys.exit("faiss is not installed: pip install -e '.[bench]'")
    if args.features:
        x, source = np.load(args.features, allow_pickle=False).astype(np.float32), args.features
    elif args.audio:
        x, source = audio_latents(args.audio), f"default-model latents of {args.audio}"
    else:
        x, source = mixture(args.n, args.dim), "Gaussian mixture"
    x = np.ascontiguousarray(x)
    k = args.codebook_size
    print(f"# k-means: {source}, N={len(x)}, D={x.shape[1]}, K={k}, {args.iterations} iterations, "
          f"best of {args.repeats}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, faiss {faiss.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"{'threads':>7} {'method':<34} {'seconds':>8} {'distortion':>11} {'vs faiss':>9}")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
        rows = []
        for backend in args.kernels.split(","):
            os.environ["RVQTOOL_KERNELS"] = backend
            seconds, centroids = best_time(lambda: ours(x, k, args.iterations, 0), args.repeats)
            rows.append((f"ours: k-means++ + Lloyd ({backend})", seconds, distortion(x, centroids)))
        seeding, _ = best_time(lambda: ours_seeding(x, k, 0), args.repeats)
        rows.append(("  of which k-means++ seeding", seeding, None))
        seconds, centroids = best_time(lambda: faiss_kmeans(x, k, args.iterations, 0), args.repeats)
        rows.append(("faiss.Kmeans (random seeds + Lloyd)", seconds, distortion(x, centroids)))
        reference = rows[-1]
        for name, seconds, value in rows:
            ratio = f"{reference[1] / seconds:8.2f}x" if value is not None and name != reference[0] else ""
            shown = f"{value:11.5g}" if value is not None else ""
            print(f"{threads:7d} {name:<34} {seconds:8.2f} {shown:>11} {ratio:>9}")
        print(f"{threads:7d} distortion, ours / faiss: "
              + ", ".join(f"{value / reference[2]:.4f}" for _, _, value in rows[:-2] if value is not None))


if __name__ == "__main__":
    main()
