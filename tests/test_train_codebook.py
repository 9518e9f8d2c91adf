"""`rvq train-codebook` and rvqtool.codebook_training: k-means finds planted clusters, levels fit
the residuals, reports equal an independent computation, EMA refinement helps short Lloyd runs,
and the outputs (a model every command takes, or a codebook file for kernels.rvq_encode) work."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rvqtool import codebook_training as ct
from rvqtool import kernels, load_codec, load_codes
from rvqtool.codec import Codec
from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.model.native import NativeCodecModel
from rvqtool.model.kmeans import kmeans, kmeans_plus_plus
from tests.audio import tone, write


def blobs(centres: int = 8, per_centre: int = 100, dim: int = 4, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(centres, dim, generator=g) * 3
    points = centre.repeat_interleave(per_centre, 0) + noise * torch.randn(centres * per_centre, dim, generator=g)
    return points, centre


def test_one_level_finds_planted_clusters():
    points, centres = blobs()
    codebooks, reports = ct.train_codebooks(points, ct.CodebookOptions(n_q=1, codebook_size=8, iterations=10))
    found = codebooks[0]
    nearest = torch.cdist(centres, found).min(dim=1).values
    assert float(nearest.max()) < 0.05  # every planted centre has a code on top of it
    assert reports[0].share_used == 1.0 and reports[0].perplexity == pytest.approx(8.0, rel=1e-6)
    assert reports[0].distortion == pytest.approx(4 * 0.05 ** 2, rel=0.15)  # what is left is the noise


def test_levels_fit_residuals_and_reports_match_an_independent_computation():
    points, _ = blobs(centres=16, per_centre=40, dim=6, noise=0.5, seed=1)
    options = ct.CodebookOptions(n_q=3, codebook_size=16, iterations=8, seed=3)
    codebooks, reports = ct.train_codebooks(points, options)
    assert codebooks.shape == (3, 16, 6)
    codes = kernels.rvq_encode(points, codebooks)
    energy = float((points ** 2).sum(dim=1).mean())
    for level, report in enumerate(reports):
        left = points - kernels.rvq_decode(codes[:level + 1], codebooks)
        assert report.distortion == pytest.approx(float((left ** 2).sum(dim=1).mean()), rel=1e-5)
        assert report.relative == pytest.approx(report.distortion / energy, rel=1e-9)
        counts = np.bincount(codes[level].numpy(), minlength=16)
        assert report.share_used == (counts > 0).mean()
    assert reports[0].distortion > reports[1].distortion > reports[2].distortion
    # level 2 is k-means of what level 1 left: refitting it on that residual changes nothing
    residual = points - codebooks[0][codes[0]]
    again, _ = kmeans(residual, 16, 8, seed=options.seed + 1)
    torch.testing.assert_close(again, codebooks[1])
    # same seed, same codebooks
    torch.testing.assert_close(ct.train_codebooks(points, options)[0], codebooks, rtol=0, atol=0)


def test_kmeans_plus_plus_draws_only_uncovered_points():
    x = torch.cat([torch.zeros(100, 3), torch.full((1, 3), 10.0)])
    for seed in range(5):
        seeds = kmeans_plus_plus(x, 2, torch.Generator().manual_seed(seed))
        assert sorted(seeds[:, 0].tolist()) == [0.0, 10.0]  # the second seed is never on the first
    distinct = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    seeds = kmeans_plus_plus(distinct, 50, torch.Generator().manual_seed(2))
    assert torch.equal(torch.sort(seeds[:, 0]).values, torch.sort(distinct[:, 0]).values)  # each point once


def test_lloyd_never_raises_distortion_and_reseeds_empty_clusters():
    points, _ = blobs(centres=32, per_centre=20, dim=8, noise=1.0, seed=2)
    history: list[dict] = []
    kmeans(points, 32, 12, seed=0, history=history)
    distortions = [h["distortion"] for h in history]
    assert len(distortions) == 12
    assert all(b <= a * (1 + 1e-6) for a, b in zip(distortions, distortions[1:]))
    # ten distinct points for sixteen codes: k-means++ must repeat seeds, whose twins stay empty
    few = torch.arange(10, dtype=torch.float32)[:, None].repeat(8, 2)
    _, reports = ct.train_codebooks(few, ct.CodebookOptions(n_q=1, codebook_size=16, iterations=3))
    assert reports[0].reseeded > 0 and reports[0].distortion == 0.0 and reports[0].share_used == 10 / 16


def test_ema_refinement_improves_a_short_lloyd_run():
    points, _ = blobs(centres=64, per_centre=16, dim=8, noise=1.0, seed=4)
    short = ct.CodebookOptions(n_q=2, codebook_size=32, iterations=1, batch_vectors=128)
    _, before = ct.train_codebooks(points, short)
    _, after = ct.train_codebooks(points, ct.CodebookOptions(**{**short.__dict__, "ema_passes": 4}))
    assert after[-1].distortion < before[-1].distortion


def test_bad_options_and_features(tmp_path):
    with pytest.raises(UserError, match="cannot fill 16 codes"):
        ct.train_codebooks(torch.zeros(10, 3), ct.CodebookOptions(n_q=1, codebook_size=16))
    with pytest.raises(UserError, match="--codebook-size must be at least 1"):
        ct.CodebookOptions(codebook_size=0).check()
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(UserError, match=r"numeric \[N, D\] array"):
        ct.load_features(tmp_path / "cube.npy")
    np.save(tmp_path / "nan.npy", np.full((4, 2), np.nan, np.float32))
    with pytest.raises(UserError, match="NaN"):
        ct.load_features(tmp_path / "nan.npy")


def test_the_features_of_audio_are_the_latents_encode_quantises(tmp_path):
    """Windows with context, as `rvq encode` cuts them: also across the reader's 30 s blocks, where
    latents without context would differ (what train-codebook fitted before)."""
    torch.manual_seed(0)
    model = NativeCodecModel(CodecConfig(encoder_filters=4, decoder_filters=4, dimension=16, n_quantizers=4,
                                         codebook_size=32))
    model.quantizer.init_from_latents(torch.randn(512, 16) * 0.05)
    codec = Codec(model, {"name": "tiny", "sha256": "0" * 64}, tmp_path / "tiny.safetensors", torch.device("cpu"), 2.0)
    path = write(tmp_path / "long.wav", tone(31.0, seed=6))
    features = ct.encoder_features(codec, [str(path)])
    codes = codec.encode_file(path).codes[0]
    assert features.shape == (codes.shape[-1], 16)
    with torch.inference_mode():
        fitted = model.quantize(features.T[None].contiguous(), 4)[0]
    np.testing.assert_array_equal(fitted.numpy(), codes)


# ---- the command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cb_corpus")
    for i in range(3):
        write(root / f"{i}.wav", tone(1.0, seed=10 + i))
    return root


def test_cli_model_from_frozen_encoder(rvq, corpus, tmp_path):
    res = rvq("train-codebook", corpus, "-o", "m/coarse.safetensors", "--n-q", "2", "--codebook-size", "32",
              "--iterations", "4", "--threads", "1", cwd=tmp_path)
    assert res.rc == 0, res
    lines = res.stdout.decode().splitlines()
    assert lines[0].split() == ["level", "distortion", "relative", "perplexity", "used", "reseeded"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"]
    assert res.err_lines == [f"model written to m/coarse.safetensors (2 x 32 codes, {3 * 75} vectors)"]
    meta = json.loads((tmp_path / "m" / "coarse.json").read_text())
    default = load_codec("default")
    assert meta["name"] == "coarse" and meta["sha256"] != default.sha256
    assert (meta["config"]["n_quantizers"], meta["config"]["codebook_size"]) == (2, 32)
    assert meta["codebook_training"]["encoder_from"]["sha256"] == default.sha256
    # the new model: same encoder and decoder, new codebooks; codes are the kernels' RVQ of its latents
    coarse = load_codec(tmp_path / "m" / "coarse")
    for key, value in default.model.state_dict().items():
        if not key.startswith("quantizer."):
            torch.testing.assert_close(coarse.model.state_dict()[key], value, rtol=0, atol=0)
    wav = tone(1.0, seed=10)
    with torch.inference_mode():
        latent = coarse.model.encoder(torch.from_numpy(wav)[None, None])[0].T
    want = kernels.rvq_encode(latent.contiguous(), coarse.model.quantizer.embed)
    np.testing.assert_array_equal(coarse.encode(wav).codes[0], want.numpy())
    # and every command takes it
    res = rvq("encode", corpus / "0.wav", "-o", "x.npy", "--model", "m/coarse", cwd=tmp_path)
    assert res.rc == 0, res
    codes = load_codes(tmp_path / "x.npy")
    assert codes.codes.shape == (1, 2, 75) and codes.codes.max() < 32 and codes.meta.model == "coarse"
    res = rvq("decode", "x.npy", "-o", "x.wav", cwd=tmp_path)
    assert res.rc == 0 and (tmp_path / "x.wav").stat().st_size > 0, res
    res = rvq("eval", corpus / "0.wav", "--model", "m/coarse", "--metrics", "mel", cwd=tmp_path)
    assert res.rc == 0 and "coarse 2q" in res.stdout.decode(), res


def test_cli_features_to_codebook_file(rvq, tmp_path):
    points, _ = blobs(centres=8, per_centre=50, dim=5, noise=0.1, seed=5)
    np.save(tmp_path / "f.npy", points.numpy())
    args = ["train-codebook", "f.npy", "--n-q", "2", "--codebook-size", "8", "--iterations", "5"]
    res = rvq(*args, "-o", "cb.safetensors", cwd=tmp_path)
    assert res.rc == 0 and res.err_lines == ["codebooks written to cb.safetensors (2 x 8 codes, 400 vectors)"], res
    codebooks = ct.load_codebooks(tmp_path / "cb.safetensors")
    assert codebooks.shape == (2, 8, 5) and codebooks.dtype == torch.float32
    torch.testing.assert_close(codebooks, ct.train_codebooks(points, ct.CodebookOptions(2, 8, 5))[0], rtol=0, atol=0)
    assert kernels.rvq_encode(points, codebooks).shape == (2, 400)
    res = rvq(*args, "-o", "cb2", cwd=tmp_path)  # same seed, same codebooks
    assert res.rc == 0, res
    torch.testing.assert_close(ct.load_codebooks(tmp_path / "cb2.safetensors"), codebooks, rtol=0, atol=0)


def test_cli_bad_input(rvq, corpus, tmp_path):
    np.save(tmp_path / "few.npy", np.zeros((5, 3), np.float32))
    np.save(tmp_path / "wide.npy", np.zeros((5, 4), np.float32))
    for args, words, rc in (  # rc 2: a usage mistake
        ([str(tmp_path / "few.npy"), str(tmp_path / "wide.npy")], "differ in dimension: 3, 4", 1),
        ([str(tmp_path / "few.npy"), str(corpus / "0.wav")], "either audio or .npy", 1),
        ([str(tmp_path / "few.npy"), "--codebook-size", "8"], "cannot fill 8 codes", 1),
        ([str(tmp_path / "few.npy"), "--n-q", "0"], "--n-q must be at least 1", 2),
        ([str(tmp_path / "nothere.wav")], "no such file", 1),
    ):
        res = rvq("train-codebook", *args, "-o", "out.safetensors", cwd=tmp_path)
        assert res.rc == rc and len(res.err_lines) == 1 and res.err_lines[0].startswith("error: ") and words in res.stderr, res
    res = rvq("train-codebook", corpus, "-o", "out.txt", cwd=tmp_path)
    assert res.rc == 1 and "is a .safetensors file" in res.stderr, res
    assert not list(tmp_path.glob("out*"))
