"""EnCodec checkpoints on rvqtool's modules give the reference package's codes and audio.

Against `encodec` (PyPI) with random, seeded weights and codebooks filled from real latents
(tests/pretrained_reference.py): codes for every bandwidth, the bandwidth -> levels mapping,
decoded audio, `rvq convert` + `rvq encode --model`, and refusals of files that are not
EnCodec checkpoints."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from rvqtool import UserError, load_codec
from rvqtool.io.codes import load_codes
from tests.pretrained_reference import clips, encodec_24khz, import_encodec

import_encodec()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    model, path = encodec_24khz(tmp_path_factory.mktemp("encodec"))
    speech, music, _ = clips(24000)
    audio = np.concatenate([speech, music])[: 6 * 24000 + 123]   # not a whole number of frames
    return model, path, audio


def reference_codes(model, audio: np.ndarray, bandwidth: float) -> np.ndarray:
    model.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        frames = model.encode(torch.from_numpy(audio)[None, None])
    assert len(frames) == 1 and frames[0][1] is None
    return frames[0][0][0].numpy()


def test_codes_equal_the_reference_at_every_bandwidth(reference):
    model, path, audio = reference
    codec = load_codec(f"encodec_24khz:{path}")
    for bandwidth in model.target_bandwidths:
        expected = reference_codes(model, audio, bandwidth)
        codes = codec.encode(audio, n_q=codec.levels_for(bandwidth=bandwidth)).codes[0]
        assert codes.shape == expected.shape
        rate = float((codes == expected).mean())
        print(f"{bandwidth:g} kbps: {rate:.5%} of {codes.size} codes equal")
        assert rate >= 0.999, (bandwidth, rate)
    distinct = [len(np.unique(level)) for level in expected]
    print("distinct codes per level:", distinct)
    # 451 frames: at most 451 values per level; deep levels carry less and less of the signal
    assert min(distinct[:8]) >= 100 and min(distinct) >= 25 and len(np.unique(expected)) >= 900


def test_bandwidth_to_levels_is_encodecs(reference):
    model, path, _ = reference
    codec = load_codec(f"encodec_24khz:{path}")
    for bandwidth in [*model.target_bandwidths, 0.75, 2.0, 7.4, 23.9]:
        assert codec.levels_for(bandwidth=bandwidth) == model.quantizer.get_num_quantizers_for_bandwidth(
            model.frame_rate, bandwidth), bandwidth
    assert codec.frame_rate == model.frame_rate and codec.config.n_quantizers == model.quantizer.n_q


def test_decoded_audio_matches_the_reference(reference):
    model, path, audio = reference
    codec = load_codec(f"encodec_24khz:{path}")
    codes = codec.encode(audio, n_q=8)
    with torch.no_grad():
        expected = model.decode([(torch.from_numpy(codes.codes), None)])[0, 0, : len(audio)].numpy()
    decoded = codec.decode(codes)[0]
    assert decoded.shape == expected.shape
    error = np.linalg.norm(decoded - expected) / np.linalg.norm(expected)
    print(f"decode relative error {error:.2e}")
    assert error < 1e-4


def test_convert_then_encode_gives_the_same_codes(reference, rvq, tmp_path):
    _, path, audio = reference
    import soundfile as sf

    sf.write(tmp_path / "clip.wav", audio, 24000, subtype="FLOAT")
    res = rvq("convert", f"encodec_24khz:{path}", "-o", "converted", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    assert (tmp_path / "converted.safetensors").exists() and (tmp_path / "converted.json").exists()
    for out, model in (("direct.npy", f"encodec_24khz:{path}"), ("converted.npy", "converted.safetensors")):
        res = rvq("encode", "clip.wav", "-o", out, "--model", model, "--bandwidth", "6", cwd=tmp_path)
        assert res.rc == 0 and res.stderr == "", res
    direct, converted = load_codes(tmp_path / "direct.npy"), load_codes(tmp_path / "converted.npy")
    assert direct.codes.shape == (1, 8, -(-len(audio) // 320))
    np.testing.assert_array_equal(direct.codes, converted.codes)
    res = rvq("decode", "converted.npy", "-o", "back.wav", "--model", "converted.safetensors", cwd=tmp_path)
    assert res.rc == 0, res
    # codes made from the checkpoint itself record its kind and path: no --model needed to decode
    res = rvq("decode", "direct.npy", "-o", "direct.wav", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    np.testing.assert_array_equal(sf.read(tmp_path / "direct.wav")[0], sf.read(tmp_path / "back.wav")[0])
    # train-codebook writes models of our own architecture only: a clear refusal, no broken model
    res = rvq("train-codebook", "clip.wav", "-o", "fine.safetensors", "--model", "converted.safetensors",
              "--n-q", "1", "--codebook-size", "4", cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 1 and "own architecture" in res.stderr, res
    assert not (tmp_path / "fine.safetensors").exists()
    assert sf.info(tmp_path / "back.wav").frames == len(audio)


class Payload:  # a pickled object that must never be rebuilt
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize("content, fragment", [
    ("random", "not a loadable torch checkpoint"),
    ("object", "not a loadable torch checkpoint"),
    ("dac", "looks like a DAC checkpoint"),
    ("shape", "has shape"),
    ("missing", "missing"),
])
def test_files_that_are_not_encodec_checkpoints_are_refused(reference, tmp_path, capsys, content, fragment):
    _, path, _ = reference
    bad = tmp_path / "bad.th"
    state = torch.load(path, weights_only=True)
    if content == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    elif content == "object":
        bad.write_bytes(pickle.dumps({"x": Payload()}))
    elif content == "dac":
        torch.save({"encoder.block.0.weight_v": torch.zeros(64, 1, 7), **state}, bad)
    elif content == "shape":
        state["decoder.model.0.conv.conv.bias"] = torch.zeros(3)
        torch.save(state, bad)
    else:
        del state["encoder.model.0.conv.conv.weight_g"]
        torch.save(state, bad)
    with pytest.raises(UserError, match=fragment) as info:
        load_codec(f"encodec_24khz:{bad}")
    assert "\n" not in str(info.value)
    assert "unpickled!" not in capsys.readouterr().out
