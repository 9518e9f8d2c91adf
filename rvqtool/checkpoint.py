"""Model files: `NAME.safetensors` (weights) + `NAME.json` (config and content hash).

The hash is a SHA-256 of the weights file; it travels into every code file so that codes are
never decoded with a model they did not come from. Nothing here unpickles.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.model.codec_model import CodecModel

_INFERENCE_ONLY = ("quantizer.embed_avg", "quantizer.cluster_size")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: CodecModel, path: Path, name: str, training_state: bool = False,
               half: bool = False, extra_meta: dict | None = None) -> Path:
    """Write weights + JSON config atomically; returns the weights path.

    Without `training_state`, the EMA statistics (only needed to keep training) are left out.
    `half` stores float tensors as float16 (half the file; loading computes in float32)."""
    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if training_state or k not in _INFERENCE_ONLY}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    meta = {"name": name, "sha256": file_sha256(path), "config": json.loads(model.config.to_json())}
    meta.update(extra_meta or {})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(path: Path) -> dict:
    """The JSON beside a weights file (path may name either)."""
    meta_path = Path(path).with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        CodecConfig.from_dict(meta["config"])
        meta["name"], meta["sha256"]
    except FileNotFoundError:
        raise UserError(f"{meta_path}: missing (a model is a .safetensors file with its .json beside it)")
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{meta_path}: not an rvqtool model config ({exc})")
    return meta


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The float32 tensors of a model file and its JSON, after checking the content hash."""
    weights = Path(path).with_suffix(".safetensors")
    meta = read_meta(weights)
    if not weights.exists():
        raise UserError(f"{weights}: model weights not found")
    if file_sha256(weights) != meta["sha256"]:
        raise UserError(f"{weights}: content hash does not match {weights.with_suffix('.json').name}; "
                        "the file is corrupt or was replaced")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights}: unreadable safetensors file ({exc})")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def fill(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, optional: tuple[str, ...]) -> None:
    """Load `state` into `model`; only the `optional` keys may be missing."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in optional]
    if missing or unexpected:
        raise UserError(f"{Path(path).with_suffix('.safetensors')}: weights do not fit the config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_model(path: Path) -> tuple[CodecModel, dict]:
    """Build the model from its JSON and load its weights; refuses files that do not match."""
    state, meta = read_weights(path)
    model = CodecModel(CodecConfig.from_dict(meta["config"]))
    fill(model, state, path, _INFERENCE_ONLY)
    if "quantizer.cluster_size" not in state:
        model.quantizer.initialized.fill_(True)
    return model.eval(), meta
