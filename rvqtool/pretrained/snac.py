"""SNAC models as published (hubertsiuzdak/snac_24khz, _32khz, _44khz) onto our modules.

A model is a folder of `config.json` (SNAC.__init__'s keyword arguments, dumped as they are) and
`pytorch_model.bin` (a torch.save'd state dict); `KIND:PATH` names the folder or the .bin file
inside it. The weights are read with `torch.load(weights_only=True)` (rvqtool/pretrained/loader.py),
the config must name only SNAC's arguments, and the state dict must fit the model it builds,
tensor by tensor; anything else is refused in one line.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from rvqtool.io.hashing import file_sha256
from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.model.snac import SNACCodecModel
from rvqtool.pretrained.dac import map_state
from rvqtool.pretrained.loader import load_checkpoint, tensors_only

RATES = {"snac_24khz": 24000, "snac_32khz": 32000, "snac_44khz": 44100}
CONFIG, WEIGHTS = "config.json", "pytorch_model.bin"
# SNAC.__init__'s defaults (snac 1.2.1), for any argument a config.json leaves out
_DEFAULTS = {"sampling_rate": 44100, "encoder_dim": 64, "encoder_rates": [3, 3, 7, 7], "latent_dim": None,
             "decoder_dim": 1536, "decoder_rates": [7, 7, 3, 3], "attn_window_size": 32, "codebook_size": 4096,
             "codebook_dim": 8, "vq_strides": [8, 4, 2, 1], "noise": True, "depthwise": True}


def files(path: Path) -> tuple[Path, Path]:
    """(config.json, pytorch_model.bin) of a SNAC folder, or of the .bin file named in it."""
    if not path.exists():
        raise UserError(f"{path}: no such SNAC folder or weights file")
    folder = path if path.is_dir() else path.parent
    weights = path if not path.is_dir() else folder / WEIGHTS
    if path.is_dir() and not weights.is_file():
        found = " (found model.safetensors: only pytorch_model.bin is read)" if (folder / "model.safetensors").exists() else ""
        raise UserError(f"{path}: no {WEIGHTS} in this folder{found}")
    if not path.is_dir() and path.suffix != ".bin":
        raise UserError(f"{path}: expected a SNAC folder or its {WEIGHTS} (with {CONFIG} beside it)")
    config = folder / CONFIG
    if not config.is_file():
        raise UserError(f"{path}: no {CONFIG} beside the weights (a SNAC model is {CONFIG} + {WEIGHTS})")
    return config, weights


def read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of SNAC's arguments")
    unknown = sorted(set(data) - set(_DEFAULTS))
    if unknown:
        raise UserError(f"{path}: not a SNAC config (unknown keys {', '.join(unknown)})")
    return {**_DEFAULTS, **data}


def _ints(value, name: str, path: Path) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= 1 for v in value):
        raise UserError(f"{path}: {name} must be a list of positive integers, got {value!r}")
    return value


def config_for(kind: str, data: dict, path: Path) -> CodecConfig:
    """Our config for SNAC's arguments `data`, checked for what the model can be built from."""
    rate = data["sampling_rate"]
    if rate != RATES[kind]:
        other = next((k for k, r in RATES.items() if r == rate), None)
        raise UserError(f"{path}: a {rate} Hz SNAC model, not {kind}" + (f" (use {other}:PATH)" if other else ""))
    encoder_rates = _ints(data["encoder_rates"], "encoder_rates", path)
    decoder_rates = _ints(data["decoder_rates"], "decoder_rates", path)
    strides = _ints(data["vq_strides"], "vq_strides", path)
    if any(strides[0] % s or s % t for s, t in zip(strides, strides[1:] + [1])):
        raise UserError(f"{path}: vq_strides {strides}: each must divide the one before (one level's codes "
                        "nest in the coarser level's frames)")
    if math.prod(encoder_rates) != math.prod(decoder_rates):
        raise UserError(f"{path}: encoder_rates and decoder_rates have different products")
    window = data["attn_window_size"]
    if window is not None and (not isinstance(window, int) or window < 1):
        raise UserError(f"{path}: attn_window_size must be a positive integer or null, got {window!r}")
    for name in ("encoder_dim", "decoder_dim", "codebook_size", "codebook_dim"):
        if not isinstance(data[name], int) or isinstance(data[name], bool) or data[name] < 1:
            raise UserError(f"{path}: {name} must be a positive integer, got {data[name]!r}")
    encoder_dim, decoder_dim = data["encoder_dim"], data["decoder_dim"]
    latent = encoder_dim * 2 ** len(encoder_rates)
    if data["latent_dim"] not in (None, latent):
        raise UserError(f"{path}: latent_dim {data['latent_dim']} is not the encoder's width {latent}")
    if window is not None and (latent % 64 or decoder_dim % 64):
        raise UserError(f"{path}: with attention the encoder and decoder widths ({latent}, {decoder_dim}) "
                        "must be multiples of 64 (its heads are 64 wide)")
    return CodecConfig(sample_rate=rate, channels=1, ratios=(strides[0], *decoder_rates),
                       encoder_filters=encoder_dim, decoder_filters=decoder_dim, dimension=latent,
                       n_quantizers=len(strides), codebook_size=data["codebook_size"],
                       extra={"architecture": "snac", "encoder_rates": encoder_rates, "vq_strides": strides,
                              "codebook_dim": data["codebook_dim"], "attn_window_size": window,
                              "noise": bool(data["noise"]), "depthwise": bool(data["depthwise"])})


def build(config: CodecConfig) -> SNACCodecModel:
    return SNACCodecModel(config)


def load(kind: str, path: Path) -> tuple[SNACCodecModel, dict]:
    """A SNAC folder as our model, and the meta a Codec needs (name, sha256 of the weights file)."""
    config_path, weights = files(path)
    config = config_for(kind, read_config(config_path), config_path)
    checkpoint = load_checkpoint(weights)
    if "state_dict" in checkpoint:
        raise UserError(f"{weights}: not a SNAC state dict (it looks like a DAC checkpoint: use dac_44khz:PATH)")
    state = tensors_only(checkpoint, weights)
    model = build(config)
    model.load_state_dict(map_state(state, model, weights, kind))
    return model.eval(), {"name": kind, "sha256": file_sha256(weights)}
