"""examples/average_models.py: the shipped default-v3 is a mean of snapshots of one run, so the
averaging must give the mean weights, keep what the run froze (so codes stay the run's), and refuse
models that are not of one run."""
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from rvqtool.checkpoint import TRAINING_ONLY, load_model, save_model
from rvqtool.config import CodecConfig
from rvqtool.model.native import NativeCodecModel

TINY = CodecConfig(encoder_filters=4, decoder_filters=8, decoder="istft", decoder_layers=2, dimension=8,
                   n_quantizers=2, codebook_size=16)
SPEC = importlib.util.spec_from_file_location("average_models", Path(__file__).parent.parent / "examples" / "average_models.py")
average_models = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(average_models)


def snapshots(tmp_path: Path, n: int) -> list[Path]:
    """n models sharing encoder and codebooks, each with its own decoder (as --decoder-only snapshots)."""
    torch.manual_seed(0)
    base = NativeCodecModel(TINY).eval()
    base.quantizer.init_from_latents(torch.randn(64, 8))
    paths = []
    for i in range(n):
        with torch.no_grad():
            for p in base.decoder.parameters():
                p.add_(0.1 * torch.randn_like(p))
        paths.append(save_model(base, tmp_path / f"snap{i}", "m", half=True, extra_meta={"training": {"steps": 100 * (i + 1)}}))
    return paths


def test_the_mean_of_snapshots_keeps_frozen_weights_and_codes(tmp_path):
    paths = snapshots(tmp_path, 3)
    out = average_models.average(paths, tmp_path / "avg.safetensors", "avg")
    models = [load_model(p)[0] for p in paths]
    averaged, meta = load_model(out)
    assert meta["name"] == "avg" and meta["training"]["steps"] == 300
    assert meta["training"]["averaged_steps"] == [100, 200, 300]
    for key, value in averaged.state_dict().items():
        if value.is_floating_point() and key not in TRAINING_ONLY:   # what model files hold
            mean = torch.stack([m.state_dict()[key] for m in models]).mean(0)
            assert torch.allclose(value, mean, atol=2e-3 * mean.abs().max().item() + 1e-4), key
    decoder = [k for k in averaged.state_dict() if k.startswith("decoder.")]
    assert any(not torch.equal(averaged.state_dict()[k], models[-1].state_dict()[k]) for k in decoder)
    x = torch.randn(1, 1, 3200)
    with torch.no_grad():
        codes = [m.quantizer.encode(m.encode_latents(x), 2) for m in (averaged, models[0])]
    assert torch.equal(*codes)


def test_models_of_different_runs_are_refused(tmp_path):
    paths = snapshots(tmp_path, 1)
    other = NativeCodecModel(dataclasses.replace(TINY, decoder_layers=3)).eval()
    other.quantizer.init_from_latents(torch.randn(64, 8))
    paths.append(save_model(other, tmp_path / "other", "m", half=True))
    with pytest.raises(SystemExit, match="configs differ"):
        average_models.average(paths, tmp_path / "avg.safetensors", "avg")
