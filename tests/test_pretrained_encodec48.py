"""EnCodec 48 kHz (stereo, 1 s segments with 1 % overlap, each normalised by its RMS) on
rvqtool's modules: the reference package's codes and scales at every bandwidth, its decoded
audio, and code files that carry the scales."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rvqtool import load_codec, load_codes, save_codes
from tests.pretrained_reference import encodec_48khz, import_encodec

import_encodec()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    return encodec_48khz(tmp_path_factory.mktemp("encodec48"))


def test_codes_and_scales_equal_the_reference_at_every_bandwidth(reference):
    model, path, audio = reference
    codec = load_codec(f"encodec_48khz:{path}")
    for bandwidth in model.target_bandwidths:
        model.set_target_bandwidth(bandwidth)
        assert codec.levels_for(bandwidth=bandwidth) == model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth)
        with torch.no_grad():
            frames = model.encode(torch.from_numpy(audio)[None])
        expected = torch.cat([codes for codes, _ in frames], dim=-1)[0].numpy()
        codes = codec.encode(audio, n_q=codec.levels_for(bandwidth=bandwidth))
        assert codes.codes.shape == (1, *expected.shape)
        rate = float((codes.codes[0] == expected).mean())
        print(f"{bandwidth:g} kbps: {rate:.5%} of {expected.size} codes equal, {len(frames)} segments")
        assert rate >= 0.999
        np.testing.assert_allclose(codes.meta.scales, [float(s) for _, s in frames], rtol=1e-6)
    distinct = [len(np.unique(level)) for level in expected]
    print("distinct codes per level:", distinct)
    assert min(distinct[:4]) >= 100 and len(np.unique(expected)) >= 500


def test_decoded_audio_matches_the_reference_and_scales_survive_files(reference, tmp_path):
    model, path, audio = reference
    codec = load_codec(f"encodec_48khz:{path}")
    codes = codec.encode(audio, n_q=8)
    for name in ("c.npy", "c.rvq"):
        save_codes(codes, tmp_path / name)
        again = load_codes(tmp_path / name)
        assert again.meta == codes.meta
        np.testing.assert_array_equal(again.codes, codes.codes)
    segments, first = [], 0
    for start, stop in codes.meta.segments():
        n = -(-(stop - start) // 320)
        segments.append((torch.from_numpy(codes.codes[..., first:first + n]), torch.tensor([[codes.meta.scales[len(segments)]]])))
        first += n
    with torch.no_grad():
        expected = model.decode(segments)[0, :, : audio.shape[1]].numpy()
    decoded = codec.decode(load_codes(tmp_path / "c.rvq"))
    assert decoded.shape == expected.shape == audio.shape
    error = np.linalg.norm(decoded - expected) / np.linalg.norm(expected)
    print(f"decode relative error {error:.2e}")
    assert error < 1e-4
