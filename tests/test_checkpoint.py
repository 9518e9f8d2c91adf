"""Model files: safetensors + JSON + hash; refused when they do not match."""
import json

import pytest
import torch

from rvqtool import UserError, load_codec
from rvqtool.checkpoint import load_model, save_model
from rvqtool.config import CodecConfig
from rvqtool.model.codec_model import CodecModel

TINY = CodecConfig(encoder_filters=4, decoder_filters=4, dimension=8, n_quantizers=2, codebook_size=16)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = CodecModel(TINY)
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


def test_bad_configs_are_refused(saved):
    _, path = saved
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["config"]["bogus"] = 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="not an rvqtool model config"):
        load_model(path)
    meta_path.unlink()
    with pytest.raises(UserError, match="missing"):
        load_model(path)


def test_load_codec_names(saved):
    _, path = saved
    assert load_codec(path).name == "tiny"
    assert load_codec(str(path.with_suffix(""))).name == "tiny"
    with pytest.raises(UserError, match="not found"):
        load_codec("no-such-model")
