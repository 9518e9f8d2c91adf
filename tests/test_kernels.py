"""The reference nearest-codebook kernels against a float64 brute force."""
import pytest
import torch

from rvqtool import kernels


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """[N, K] in float64, whose ~1e-16 relative error is exact at the tolerances below (and,
    unlike an [N, K, D] difference tensor, small enough to be quick)."""
    x64, c64 = x.double(), codebook.double()
    return (x64 * x64).sum(1)[:, None] + (c64 * c64).sum(1)[None] - 2 * x64 @ c64.T


@pytest.mark.parametrize("n,d,k", [(0, 8, 16), (1, 8, 16), (257, 3, 33), (1000, 128, 1024), (77, 512, 100)])
def test_nearest_matches_float64_except_near_ties(n, d, k):
    g = torch.Generator().manual_seed(n + d + k)
    x, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    got, dist = kernels.nearest(x, codebook, return_distances=True)
    exact = squared_distances(x, codebook)
    want = exact.argmin(dim=1)
    chosen, best = exact.gather(1, got[:, None])[:, 0], exact.gather(1, want[:, None])[:, 0]
    # rule: the chosen code is the float64 nearest, or within 1e-5 relative of it (a near-tie)
    assert torch.all((got == want) | (chosen - best <= 1e-5 * best.abs().clamp(min=1)))
    assert torch.allclose(dist.double(), chosen, rtol=1e-4, atol=1e-3)


def test_ties_go_to_lowest_index():
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert kernels.nearest(x, codebook).tolist() == [0, 1, 0]


def test_rvq_encode_equals_level_by_level_and_decode_sums_levels():
    g = torch.Generator().manual_seed(1)
    x, codebooks = torch.randn(300, 16, generator=g), torch.randn(4, 64, 16, generator=g)
    codes = kernels.rvq_encode(x, codebooks)
    residual = x.clone()
    for level in range(4):
        index = kernels.nearest(residual, codebooks[level])
        assert torch.equal(codes[level], index)
        residual -= codebooks[level][index]
    assert torch.allclose(kernels.rvq_decode(codes, codebooks), x - residual, atol=1e-5)
    assert torch.allclose(kernels.rvq_decode(codes[:2], codebooks), codebooks[0][codes[0]] + codebooks[1][codes[1]])


def test_non_contiguous_input_is_accepted():
    g = torch.Generator().manual_seed(2)
    x, codebook = torch.randn(16, 50, generator=g).t(), torch.randn(8, 16, generator=g)
    assert torch.equal(kernels.nearest(x, codebook), kernels.nearest(x.contiguous(), codebook))


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_input_is_rejected(bad):
    x = torch.zeros(4, 3)
    x[2, 1] = float(bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        kernels.nearest(x, torch.zeros(5, 3))


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="dimension mismatch"):
        kernels.nearest(torch.zeros(4, 3), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="floating dtype"):
        kernels.nearest(torch.zeros(4, 3, dtype=torch.float64), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="code indices"):
        kernels.rvq_decode(torch.tensor([[5]]), torch.zeros(1, 5, 3))
