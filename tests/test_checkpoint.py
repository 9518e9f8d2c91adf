"""Model files: one safetensors file holding its config (older ones: + JSON + hash); refused when
they do not match."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rvqtool import UserError, load_codec
from rvqtool.checkpoint import META_KEY, embedded_meta, load_model, read_meta, save_model
from rvqtool.io.hashing import file_sha256
from rvqtool.registry import SHIPPED_DIR, SHIPPED_VERSIONS
from rvqtool.config import CodecConfig
from rvqtool.model.native import NativeCodecModel

TINY = CodecConfig(encoder_filters=4, decoder_filters=4, dimension=8, n_quantizers=2, codebook_size=16)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = NativeCodecModel(TINY)
    model.quantizer.init_from_latents(torch.randn(64, 8))
    return model, save_model(model, tmp_path / "m.safetensors", "tiny")


def test_round_trip_keeps_weights_and_config(saved):
    model, path = saved
    loaded, meta = load_model(path)
    assert loaded.config == TINY and meta["name"] == "tiny"
    for key, value in loaded.state_dict().items():
        if key in model.state_dict() and "cluster_size" not in key and "embed_avg" not in key:
            assert torch.equal(value, model.state_dict()[key]), key


def test_half_weights_are_close_and_half_the_size(saved, tmp_path):
    model, path = saved
    half = save_model(model, tmp_path / "h.safetensors", "tiny", half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded, _ = load_model(half)
    w = dict(loaded.named_parameters())["encoder.model.0.weight_v"]
    assert w.dtype == torch.float32
    assert torch.allclose(w, dict(model.named_parameters())["encoder.model.0.weight_v"], rtol=1e-3, atol=1e-4)


def test_a_changed_weights_file_is_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="hash does not match"):
        load_model(path)


def legacy_model(model: NativeCodecModel, path: Path, name: str) -> Path:
    """A model as versions before single-file models wrote it (the shipped ones are such): weights
    without metadata, and NAME.json with the config and the weights' SHA-256."""
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    meta = {"name": name, "sha256": file_sha256(path), "config": json.loads(model.config.to_json())}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def test_bad_configs_of_two_file_models_are_refused(saved, tmp_path):
    model, _ = saved
    path = legacy_model(model, tmp_path / "old.safetensors", "old")
    loaded, meta = load_model(path)
    assert meta["name"] == "old" and meta["sha256"] == file_sha256(path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["config"]["bogus"] = 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="not an rvqtool model config"):
        load_model(path)
    meta_path.unlink()
    with pytest.raises(UserError, match="missing"):
        load_model(path)


def test_a_single_file_model_is_its_own_config(saved, tmp_path):
    """The JSON beside a model written now is for people: edited or removed, it changes nothing;
    the config inside the file decides, and a bad one is refused."""
    model, path = saved
    readable = json.loads(path.with_suffix(".json").read_text())
    assert readable["sha256"] == file_sha256(path) and readable["name"] == "tiny"
    path.with_suffix(".json").write_text(json.dumps({**readable, "name": "other", "config": {"bogus": 1}}))
    assert load_model(path)[1]["name"] == "tiny"
    path.with_suffix(".json").unlink()
    loaded, meta = load_model(path)
    assert loaded.config == TINY and meta["sha256"] == file_sha256(path)
    tensors = load_file(str(path))
    inner = embedded_meta(path)
    inner["config"]["bogus"] = 1
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={META_KEY: json.dumps(inner)})
    with pytest.raises(UserError, match="not an rvqtool model config"):
        load_model(tmp_path / "bad.safetensors")


def test_shipped_models_keep_their_identity():
    """Code files name shipped models by the SHA-256 their JSON records (the registry reads it from
    there): the file's, unchanged. default-v1 and v2 are two-file models, later ones one-file."""
    for version in SHIPPED_VERSIONS:
        weights = SHIPPED_DIR / f"{version}.safetensors"
        assert (embedded_meta(weights) is None) == (version in ("default-v1", "default-v2"))
        recorded = json.loads(weights.with_suffix(".json").read_text())["sha256"]
        assert read_meta(weights)["sha256"] == recorded == file_sha256(weights)
        assert load_codec(version).sha256 == recorded


def test_load_codec_names(saved):
    _, path = saved
    assert load_codec(path).name == "tiny"
    assert load_codec(str(path.with_suffix(""))).name == "tiny"
    with pytest.raises(UserError, match="not found"):
        load_codec("no-such-model")


def test_istft_decoder_model_file_round_trip(tmp_path):
    """A model with the inverse-STFT decoder saves and loads like any other: same config, same audio."""
    torch.manual_seed(3)
    model = NativeCodecModel(dataclasses.replace(TINY, decoder="istft", decoder_filters=8, decoder_layers=2)).eval()
    model.quantizer.init_from_latents(torch.randn(64, 8))
    path = save_model(model, tmp_path / "istft", "istft")
    loaded, meta = load_model(path)
    assert loaded.config == model.config and meta["config"]["decoder"] == "istft"
    z = torch.randn(1, 8, 5)
    with torch.no_grad():
        assert torch.equal(loaded.decode_latents(z), model.decode_latents(z))


def test_a_model_with_a_decoder_this_version_lacks_is_refused_in_one_line(saved, tmp_path):
    _, path = saved
    inner = embedded_meta(path)
    inner["config"]["decoder"] = "wavenet"
    save_file(load_file(str(path)), str(tmp_path / "newer.safetensors"), metadata={META_KEY: json.dumps(inner)})
    with pytest.raises(UserError, match="decoder 'wavenet' is not one this rvqtool builds"):
        load_model(tmp_path / "newer.safetensors")
