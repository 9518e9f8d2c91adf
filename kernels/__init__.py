"""Nearest-codebook search and residual quantisation, independent of audio.

Shipped as `rvqtool.kernels`. One dispatcher picks the implementation by device and dtype:

- CUDA tensors: the torch reference; the Triton kernels (`triton_gpu`) only with
  `RVQTOOL_KERNELS=triton`. They are tested against the reference under the Triton interpreter
  on the CPU (tests/test_kernels_fast.py) but have not yet run on a GPU, so they stay opt-in
  until a run on a real GPU has shown them exact;
- CPU float32: the numba kernels (`numba_cpu`, compiled once per machine and loaded without
  numba; on as many threads as torch uses), or the torch reference where numba is missing or
  cannot compile them;
- anything else (float64, fp16/bf16 on the CPU, other devices): the torch reference.

Each implementation is deterministic per row: a row's index depends on that row and the
codebook alone, never on N, the other rows, block sizes or the thread count. Implementations
may differ from one another at near-ties (float32 sums in different orders); see
tests/test_kernels_fast.py for the rule. `RVQTOOL_KERNELS=reference` (or `numba`, `triton`)
forces one implementation where it can serve the tensors, for comparisons.
"""
from __future__ import annotations

import os

import torch

from . import reference

__all__ = ["nearest", "rvq_encode", "rvq_decode", "backend_for"]


def _check(x: torch.Tensor, codebook: torch.Tensor, x_ndim: int, cb_ndim: int, finite: bool = True) -> None:
    """Shapes, dtypes and devices; with `finite`, no NaN or inf (the numba kernels check that
    themselves, in one pass without torch: a torch reduction before a kernel call leaves torch's
    OpenMP workers spinning on the cores the kernel then wants)."""
    if x.ndim != x_ndim or codebook.ndim != cb_ndim:
        raise ValueError(f"expected x with {x_ndim} dims and codebooks with {cb_ndim}, "
                         f"got {tuple(x.shape)} and {tuple(codebook.shape)}")
    if x.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"dimension mismatch: x has D={x.shape[-1]}, codebook D={codebook.shape[-1]}")
    if x.dtype != codebook.dtype or not x.is_floating_point():
        raise TypeError(f"x and codebook must share a floating dtype, got {x.dtype} and {codebook.dtype}")
    if codebook.shape[-2] == 0:
        raise ValueError("the codebook is empty (K = 0)")
    if x.device != codebook.device:
        raise ValueError(f"x is on {x.device} but the codebook is on {codebook.device}")
    if finite and not (_all_finite(x) and _all_finite(codebook)):
        raise ValueError("x or codebook holds NaN or inf")


def _all_finite(t: torch.Tensor) -> bool:
    # min and max propagate NaN and show +-inf: one reduction, no N x D bool tensor
    if t.numel() == 0:
        return True
    low, high = torch.aminmax(t.detach())
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


_loaded: dict = {}


def _load(name: str):
    """The numba or Triton module, imported on first use (None where it cannot be)."""
    if name not in _loaded:
        try:
            if name == "numba":
                from . import numba_cpu as module
                if not module.available():
                    module = None
            else:
                from . import triton_gpu as module
                if not module.available():
                    module = None
        except ImportError:
            module = None
        _loaded[name] = module
    return _loaded[name]


def backend_for(x: torch.Tensor) -> str:
    """Which implementation serves tensors like `x`: "triton", "numba" or "reference"."""
    forced = os.environ.get("RVQTOOL_KERNELS", "").strip().lower()
    if x.device.type == "cuda":  # Triton opt-in: never yet run on a GPU (see the module docstring)
        return "triton" if forced == "triton" and _load("triton") is not None else "reference"
    if x.device.type == "cpu" and x.dtype == torch.float32:
        # one implementation for every caller and size: implementations differ at near-ties, and
        # codes must not depend on the command or the file's length
        wanted = forced or "numba"
        if wanted == "triton" and _load("triton") is not None:  # interpreter mode (TRITON_INTERPRET=1)
            return "triton"
        return "numba" if wanted == "numba" and _load("numba") is not None else "reference"
    return "reference"


def _numpy(t: torch.Tensor):
    return t.detach().contiguous().numpy()


def nearest(x: torch.Tensor, codebook: torch.Tensor, return_distances: bool = False):
    """For x [N, D] and codebook [K, D]: indices [N] (and squared distances [N]).

    Ties go to the lowest index."""
    backend = backend_for(x)
    _check(x, codebook, 2, 2, finite=backend != "numba")
    if backend == "numba":
        out = _load("numba").nearest(_numpy(x), _numpy(codebook), return_distances, threads=torch.get_num_threads())
        if return_distances:
            return torch.from_numpy(out[0]), torch.from_numpy(out[1])
        return torch.from_numpy(out)
    if backend == "triton":
        return _load("triton").nearest(x.detach().contiguous(), codebook.detach().contiguous(), return_distances)
    return reference.nearest(x.contiguous(), codebook.contiguous(), return_distances)


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """For x [N, D] and codebooks [L, K, D]: codes [L, N] (int64).

    Level l quantises what levels < l left over; equal to calling `nearest` level by level."""
    backend = backend_for(x)
    _check(x, codebooks, 2, 3, finite=backend != "numba")
    if backend == "numba":
        return torch.from_numpy(_load("numba").rvq_encode(_numpy(x), _numpy(codebooks), threads=torch.get_num_threads()))
    if backend == "triton":
        return _load("triton").rvq_encode(x.detach().contiguous(), codebooks.detach().contiguous())
    return reference.rvq_encode(x.contiguous(), codebooks.contiguous())


def rvq_decode(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """For codes [L', N] (L' <= L) and codebooks [L, K, D]: the summed vectors [N, D].

    A gather and a sum, memory-bound on every device: the torch reference serves all."""
    if codes.ndim != 2 or codes.shape[0] > codebooks.shape[0]:
        raise ValueError(f"codes must be [levels <= {codebooks.shape[0]}, N], got {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebooks.shape[1]):
        raise ValueError(f"code indices must lie in [0, {codebooks.shape[1]})")
    return reference.rvq_decode(codes.long(), codebooks)
