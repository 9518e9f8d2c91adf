"""The Triton kernels on a GPU against the torch reference and a float64 brute force: what must
hold before CUDA tensors may go to Triton by default (kernels/__init__.py keeps them opt-in).

float32: every case of tests/test_kernels_fast.py meets its exactness rule, and a row's index and
distance are bit-identical whatever the batch around it (alone, in windows, inside a larger batch,
permuted) and whichever autotuning config runs (the kernels' claim: only BLOCK_D, fixed per D,
shapes the arithmetic). fp16/bf16: the same rule on the rounded values, and `rvq_encode` equal to
`nearest` level by level (the rule kernels/triton_gpu.py states: no bit-invariance across configs).

The device is RVQTOOL_TEST_DEVICE (default cuda; skipped without a GPU). With
RVQTOOL_TEST_DEVICE=cpu and TRITON_INTERPRET=1 set before pytest starts, the same tests run the
kernels in Triton's interpreter on small cases, which is how benchmarks/gpu_check.sh was prepared.
"""
from __future__ import annotations

import os

import pytest
import torch

from tests.test_kernels_fast import CASES, TRITON_CASES, TRITON_HALF_CASES, check_exactness, make_case, make_codebooks

DEVICE = os.environ.get("RVQTOOL_TEST_DEVICE", "cuda")
INTERPRETED = DEVICE == "cpu"
if INTERPRETED and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("RVQTOOL_TEST_DEVICE=cpu needs TRITON_INTERPRET=1", allow_module_level=True)
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
pytest.importorskip("triton")

from rvqtool import kernels  # noqa: E402  (after the skips: TRITON_INTERPRET must be read first)
from rvqtool.kernels import reference, triton_gpu  # noqa: E402
from triton.runtime import autotuner  # noqa: E402

# what the autotuner skips a config for (its shared memory or registers exceed the GPU's)
UNRUNNABLE = tuple(getattr(autotuner, name) for name in ("OutOfResources", "CompileTimeAssertionFailure", "PTXASError")
                   if hasattr(autotuner, name))

# on a GPU, every case but the interpreter's small twins of larger ones (the cost there is compiling:
# each new specialisation x 7 autotuning configs, on a fresh machine without a cache); the
# interpreter runs numpy per tile, so only the small ones there
NAMES = TRITON_CASES if INTERPRETED else sorted(c for c in CASES if not c.startswith("t_"))
FLOAT32_INVARIANCE = ["t_d17", "t_offset_d8"] if INTERPRETED else ["d8", "d17", "d37", "d128", "offset_d8", "offset_d64"]
HALF = TRITON_HALF_CASES if INTERPRETED else ["n1", "d37", "d128", "t_dup_d40", "offset_d64"]


def on_device(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(DEVICE) for t in tensors]


def test_dispatcher_sends_device_tensors_to_triton_when_asked(monkeypatch):
    monkeypatch.setenv("RVQTOOL_KERNELS", "triton")
    x, codebook = on_device(*make_case(NAMES[-1]))
    assert kernels.backend_for(x) == "triton"
    assert torch.equal(kernels.nearest(x, codebook), triton_gpu.nearest(x, codebook))


@pytest.mark.parametrize("name", NAMES)
def test_float32_exact(name):
    """Triton meets the exactness rule, as the torch reference on the same device does, and the
    two agree on at least 99 % of random rows (they differ only at float32 near-ties)."""
    x, codebook = make_case(name)
    xd, cd = on_device(x, codebook)
    index, dist = (t.cpu() for t in triton_gpu.nearest(xd, cd, return_distances=True))
    check_exactness(x, codebook, index, dist, CASES[name][3])
    ref_index, ref_dist = (t.cpu() for t in reference.nearest(xd, cd, return_distances=True))
    check_exactness(x, codebook, ref_index, ref_dist, CASES[name][3])
    if len(x) and CASES[name][3] == "randn":
        assert (index == ref_index).double().mean() >= 0.99
    codebooks = on_device(make_codebooks(name))[0]
    codes = triton_gpu.rvq_encode(xd, codebooks)
    residual = xd.clone()
    for level in range(len(codebooks)):  # rvq_encode is nearest level by level, bit for bit
        assert torch.equal(codes[level], triton_gpu.nearest(residual, codebooks[level])), f"level {level}"
        residual -= codebooks[level][codes[level]]


@pytest.mark.parametrize("name", FLOAT32_INVARIANCE)
def test_float32_rows_do_not_depend_on_the_batch(name):
    """The same rows alone, in uneven windows, inside a batch 5x larger, and permuted."""
    x, codebook = on_device(*make_case(name))
    codebooks = on_device(make_codebooks(name, 3))[0]
    index, dist = triton_gpu.nearest(x, codebook, return_distances=True)
    codes = triton_gpu.rvq_encode(x, codebooks)
    alone = [triton_gpu.nearest(x[i:i + 1], codebook, return_distances=True) for i in range(0, len(x), max(1, len(x) // 7))]
    assert torch.equal(torch.cat([a[0] for a in alone]), index[::max(1, len(x) // 7)])
    assert torch.equal(torch.cat([a[1] for a in alone]), dist[::max(1, len(x) // 7)])
    cuts = sorted({0, 1, 3, len(x) // 3, len(x) // 3 + 17, len(x)} & set(range(len(x) + 1)))
    windows = list(zip(cuts, cuts[1:]))
    assert torch.equal(torch.cat([triton_gpu.nearest(x[a:b], codebook) for a, b in windows]), index)
    assert torch.equal(torch.cat([triton_gpu.rvq_encode(x[a:b], codebooks) for a, b in windows], dim=1), codes)
    g = torch.Generator().manual_seed(1)
    others = torch.randn(4 * len(x), x.shape[1], generator=g).to(DEVICE) * x.std() + x.mean()
    big = torch.cat([others[:len(x)], x, others[len(x):]])
    perm = torch.randperm(len(big), generator=g).to(DEVICE)
    inverse = torch.argsort(perm)
    big_index, big_dist = triton_gpu.nearest(big[perm], codebook, return_distances=True)
    assert torch.equal(big_index[inverse][len(x):2 * len(x)], index)
    assert torch.equal(big_dist[inverse][len(x):2 * len(x)], dist)
    assert torch.equal(triton_gpu.rvq_encode(big[perm], codebooks)[:, inverse][:, len(x):2 * len(x)], codes)


@pytest.mark.parametrize("name", FLOAT32_INVARIANCE[:2])
def test_float32_rows_do_not_depend_on_the_autotuned_config(name):
    """Each config the autotuner may pick, run directly, gives the autotuned call's indices and
    distances bit for bit (BLOCK_D, the reduction split, is fixed per D)."""
    x, codebook = on_device(*make_case(name))
    codebooks = on_device(make_codebooks(name, 2))[0]
    n, dim = x.shape
    k = codebook.shape[0]
    index, dist = triton_gpu.nearest(x, codebook, return_distances=True)
    codes = triton_gpu.rvq_encode(x, codebooks)
    block_d = triton_gpu._block_d(dim)
    ran = 0
    for config in triton_gpu._configs():
        blocks = dict(config.kwargs)
        launch = {} if INTERPRETED else {"num_warps": config.num_warps, "num_stages": config.num_stages}
        grid = (triton_gpu.triton.cdiv(n, blocks["BLOCK_N"]),)
        got_index = torch.empty_like(index)
        got_best = torch.empty(n, dtype=torch.float32, device=DEVICE)
        try:
            triton_gpu._nearest_kernel[grid](x, codebook, triton_gpu._sq_norms(codebook), got_index, got_best, n, k,
                                             dim, x.stride(0), BLOCK_D=block_d, PRECISION="ieee", WIDEN=False,
                                             **blocks, **launch)
        except UNRUNNABLE:  # too large for this GPU: the autotuner skips such a config too
            continue
        ran += 1
        assert torch.equal(got_index, index), str(config)
        assert torch.equal(got_best + (x * x).sum(dim=1), dist), str(config)  # as `nearest` adds ||x||^2
        residual, got_codes = x.clone(), torch.zeros_like(codes)
        triton_gpu._rvq_kernel[grid](residual, codebooks, triton_gpu._sq_norms(codebooks), got_codes, n, k, dim,
                                     len(codebooks), BLOCK_D=block_d, PRECISION="ieee", WIDEN=False, **blocks, **launch)
        assert torch.equal(got_codes, codes), str(config)
    assert ran, "no config could run"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", HALF)
def test_half_precision_rule(name, dtype):
    x, codebook = (t.to(getattr(torch, dtype)) for t in make_case(name))
    xd, cd = on_device(x, codebook)
    index, dist = triton_gpu.nearest(xd, cd, return_distances=True)
    assert dist.dtype == torch.float32
    check_exactness(x, codebook, index.cpu(), dist.cpu(), CASES[name][3])
    codebooks = on_device(make_codebooks(name, 2).to(x.dtype))[0]
    codes = triton_gpu.rvq_encode(xd, codebooks)
    residual = xd.clone()
    for level in range(len(codebooks)):
        assert torch.equal(codes[level], triton_gpu.nearest(residual, codebooks[level])), f"level {level}"
        residual -= codebooks[level][codes[level]]
