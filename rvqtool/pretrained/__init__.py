"""Models of other projects (EnCodec, DAC) run on rvqtool's own modules.

A model is named `KIND:PATH` (e.g. `encodec_24khz:/models/encodec_24khz-d7cc33bc.th`): the
checkpoint is read without unpickling objects, checked tensor by tensor, and mapped onto our
modules. `rvq convert` writes the same model as our safetensors + JSON, which `load_model_file`
reads back (the JSON's config names the architecture).
"""
from __future__ import annotations

from pathlib import Path

import torch

from rvqtool.checkpoint import file_sha256, fill, load_model, read_meta, read_weights
from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.pretrained import dac, encodec
from rvqtool.pretrained.loader import load_checkpoint, tensors_only

KINDS = (*encodec.CONFIGS, *dac.RATES)


def parse_spec(name: str | Path) -> tuple[str, Path] | None:
    """'encodec_24khz:/path/file.th' -> ('encodec_24khz', Path); anything else -> None."""
    kind, sep, rest = str(name).partition(":")
    if not sep or kind not in KINDS:
        return None
    if not rest:
        raise UserError(f"--model {name}: give the checkpoint's path after '{kind}:'")
    return kind, Path(rest).expanduser()


def build(config: CodecConfig) -> torch.nn.Module:
    """Our module for a foreign architecture named in `config.extra`."""
    architecture = config.extra.get("architecture")
    if architecture == "encodec":
        from rvqtool.model.encodec_model import EncodecCodecModel
        return EncodecCodecModel(config)
    if architecture == "dac":
        return dac.build(config)
    raise UserError(f"unknown model architecture {architecture!r}")


def load_reference(kind: str, path: Path) -> tuple[torch.nn.Module, dict]:
    """A foreign checkpoint as our model, and the meta a Codec needs (name, content hash)."""
    checkpoint = load_checkpoint(path)
    if kind in dac.RATES:
        model = dac.build(dac.config_for(kind, checkpoint, path))
        model.load_state_dict(dac.map_state(tensors_only(dac.state_of(checkpoint, path), path), model, path, kind))
    else:
        if "state_dict" in checkpoint:
            raise UserError(f"{path}: not an {kind} checkpoint (it looks like a DAC checkpoint: use dac_44khz:PATH)")
        model = encodec.build(kind)
        model.load_state_dict(encodec.map_state(tensors_only(checkpoint, path), model, path, kind), strict=False)
        model.quantizer.initialized.fill_(True)
    return model.eval(), {"name": kind, "sha256": file_sha256(path)}


def load_model_file(path: Path) -> tuple[torch.nn.Module, dict]:
    """An rvqtool model file: our own architecture, or a converted foreign one."""
    meta = read_meta(path)
    if "architecture" not in meta["config"].get("extra", {}):
        return load_model(path)
    state, meta = read_weights(path)
    model = build(CodecConfig.from_dict(meta["config"]))
    fill(model, state, path, tuple(encodec.OURS_ONLY))
    if hasattr(model.quantizer, "initialized"):
        model.quantizer.initialized.fill_(True)
    return model.eval(), meta
