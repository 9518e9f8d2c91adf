"""DAC checkpoints (`weights_44khz_8kbps_0.0.1.pth`, the 24 kHz and 16 kHz models) onto our modules.

A DAC file holds {"state_dict": ..., "metadata": {"kwargs": {...}}}: the kwargs the model was
built with (rates, widths, codebooks). Our DACCodecModel uses DAC's own module names, so the
state dict loads by name; it is checked tensor by tensor first.
"""
from __future__ import annotations

from pathlib import Path

import torch

from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.pretrained.loader import check_shapes, load_checkpoint, tensors_only
from rvqtool.model.dac_model import DACCodecModel

RATES = {"dac_44khz": 44100, "dac_24khz": 24000, "dac_16khz": 16000}
# DAC's defaults, used for any kwarg the file does not record
_DEFAULTS = {"encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": None, "decoder_dim": 1536,
             "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8}
_RENAMES = [(".parametrizations.weight.original0", ".weight_g"), (".parametrizations.weight.original1", ".weight_v")]


def config_for(kind: str, checkpoint: dict, path: str | Path) -> CodecConfig:
    kwargs = dict(_DEFAULTS)
    metadata = checkpoint.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("kwargs"), dict):
        kwargs.update({k: v for k, v in metadata["kwargs"].items() if k in _DEFAULTS or k == "sample_rate"})
    rate = int(kwargs.get("sample_rate", RATES[kind]))
    if rate != RATES[kind]:
        raise UserError(f"{path}: a {rate} Hz DAC model, not {kind} (use dac_{rate // 1000}khz:PATH)")
    if not isinstance(kwargs["codebook_dim"], int):
        raise UserError(f"{path}: per-level codebook dimensions are not supported")
    latent = kwargs["latent_dim"] or kwargs["encoder_dim"] * 2 ** len(kwargs["encoder_rates"])
    return CodecConfig(sample_rate=rate, channels=1, ratios=tuple(int(r) for r in kwargs["decoder_rates"]),
                       encoder_filters=int(kwargs["encoder_dim"]), decoder_filters=int(kwargs["decoder_dim"]),
                       dimension=int(latent), n_quantizers=int(kwargs["n_codebooks"]),
                       codebook_size=int(kwargs["codebook_size"]),
                       extra={"architecture": "dac", "encoder_rates": [int(r) for r in kwargs["encoder_rates"]],
                              "codebook_dim": int(kwargs["codebook_dim"])})


def state_of(checkpoint: dict, path: str | Path) -> dict:
    if not isinstance(checkpoint.get("state_dict"), dict):
        hint = " (it looks like an EnCodec checkpoint: use encodec_24khz:PATH)" if any(
            str(k).startswith("encoder.model.") for k in checkpoint) else ""
        raise UserError(f"{path}: not a DAC checkpoint (no 'state_dict' entry){hint}")
    return checkpoint["state_dict"]


def map_state(state: dict[str, torch.Tensor], model: DACCodecModel, path: str | Path, name: str) -> dict:
    ours = model.state_dict()
    mapped = {}
    for key, value in state.items():
        for old, new in _RENAMES:
            key = key.replace(old, new)
        mapped[key] = value
    unexpected = [k for k in mapped if k not in ours]
    missing = [k for k in ours if k not in mapped]
    if unexpected or missing:
        raise UserError(f"{path}: not a {name} checkpoint: "
                        + (f"unexpected {unexpected[:2]}" if unexpected else f"missing {missing[:2]}"))
    return check_shapes(mapped, ours, path, f"a {name}")


def build(config: CodecConfig) -> DACCodecModel:
    return DACCodecModel(config)


def load(kind: str, path: Path) -> DACCodecModel:
    """A DAC checkpoint of this `kind` on our modules (its own kwargs say how it was built)."""
    checkpoint = load_checkpoint(path)
    model = build(config_for(kind, checkpoint, path))
    model.load_state_dict(map_state(tensors_only(state_of(checkpoint, path), path), model, path, kind))
    return model
