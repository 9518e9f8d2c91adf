"""Model files: `NAME.safetensors`, one file that holds the weights and, in its safetensors
metadata, the JSON config (with the SHA-256 of the tensor bytes, to tell a damaged file); the
SHA-256 of the whole file is the model's identity. It travels into every code file so that codes
are never decoded with a model they did not come from. Nothing here unpickles.

One rename puts a whole model (or training state) in place: a kill at any instant leaves the old
file or the new one, never weights of one write with the config of another. `NAME.json` beside it
repeats the metadata for people and older versions; it decides nothing for a single-file model,
and is removed before each write and written after, so it never describes another write. Models
of older versions (the shipped ones among them) are two files, the JSON holding the config and the
weights' hash: they load as before, their identity unchanged.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.hashing import file_sha256
from rvqtool.model.native import DECODERS, NativeCodecModel
from rvqtool.model.quantizer import TRAINING_ONLY

META_KEY = "rvqtool"          # the safetensors metadata entry that holds the JSON
TENSORS_SHA256 = "tensors_sha256"


def save_model(model: NativeCodecModel, path: Path, name: str, training_state: bool = False,
               half: bool = False, extra_meta: dict | None = None) -> Path:
    """Write the model as one file (weights + config), atomically; returns its path.

    Without `training_state`, the EMA statistics (only needed to keep training) are left out.
    `half` stores float tensors as float16 (half the file; loading computes in float32)."""
    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if training_state or k not in TRAINING_ONLY}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    write_tensors(path, state, {"name": name, "config": json.loads(model.config.to_json()), **(extra_meta or {})})
    return path


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """`path` alone holds `tensors` and `meta` (plus the tensor bytes' SHA-256), put in place by one
    rename after an fsync; PATH.json repeats `meta` and the file's SHA-256 for people."""
    meta = {**meta, TENSORS_SHA256: hashlib.sha256(_tensor_bytes(save(tensors))).hexdigest()}
    data = save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    readable = path.with_suffix(".json")
    readable.unlink(missing_ok=True)
    with atomic_path(path, durable=True) as tmp:
        tmp.write_bytes(data)
    meta = {k: v for k, v in meta.items() if k != TENSORS_SHA256}
    with atomic_path(readable) as tmp:
        tmp.write_text(json.dumps({**meta, "sha256": hashlib.sha256(data).hexdigest()}, indent=2, sort_keys=True) + "\n")


def _tensor_bytes(data: bytes) -> memoryview:
    """What follows a safetensors file's header: the tensors, the same whatever its metadata."""
    (length,) = struct.unpack("<Q", data[:8])
    return memoryview(data)[8 + length:]


def embedded_meta(path: Path) -> dict | None:
    """The JSON a single-file model or state holds; None for a file of an older version (or not a
    safetensors file: its reader says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if length > f.seek(0, 2) - 8:
                return None
            f.seek(8)
            header = json.loads(f.read(length))
        text = header.get("__metadata__", {}).get(META_KEY)
        return None if text is None else json.loads(text)
    except (OSError, ValueError, AttributeError):
        return None


def read_meta(path: Path) -> dict:
    """A model's name, config and anything else recorded, and its identity ("sha256": of the
    weights file); path may name the .safetensors or the .json of either kind of model file."""
    weights = Path(path).with_suffix(".safetensors")
    meta = embedded_meta(weights)
    if meta is not None:
        _check_meta(meta, weights)
        return {**{k: v for k, v in meta.items() if k != TENSORS_SHA256}, "sha256": file_sha256(weights)}
    meta_path = Path(path).with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        meta["sha256"]
    except FileNotFoundError:
        raise UserError(f"{meta_path}: missing (a model is a .safetensors file with its .json beside it)")
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{meta_path}: not an rvqtool model config ({exc})")
    _check_meta(meta, meta_path)
    return meta


def _check_meta(meta: dict, where: Path) -> None:
    try:
        config = CodecConfig.from_dict(meta["config"])
        meta["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{where}: not an rvqtool model config ({exc})")
    if config.decoder not in DECODERS:
        raise UserError(f"{where}: decoder {config.decoder!r} is not one this rvqtool builds "
                        f"({', '.join(DECODERS)}): a model from a newer version?")


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None, str]:
    """(tensors, the JSON they hold or None for an older file, SHA-256 of the file), reading it
    once; a single file whose tensor bytes are not those it records is refused."""
    try:
        data = Path(path).read_bytes()
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable safetensors file ({exc})")
    meta = embedded_meta(path)
    if meta is not None and hashlib.sha256(_tensor_bytes(data)).hexdigest() != meta.get(TENSORS_SHA256):
        raise UserError(f"{path}: content hash does not match the one it records; the file is corrupt")
    return tensors, meta, hashlib.sha256(data).hexdigest()


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The float32 tensors of a model file and its metadata, after checking the content hash."""
    weights = Path(path).with_suffix(".safetensors")
    legacy = embedded_meta(weights) is None
    meta = read_meta(weights) if legacy else {}  # a single file's metadata comes with its one read below
    if not weights.exists():
        raise UserError(f"{weights}: model weights not found")
    state, embedded, sha256 = read_tensors(weights)
    if embedded is None:
        meta = meta or read_meta(weights)   # replaced by an older-style file since the look above
        if sha256 != meta["sha256"]:
            raise UserError(f"{weights}: content hash does not match {weights.with_suffix('.json').name}; "
                            "the file is corrupt or was replaced")
    else:
        _check_meta(embedded, weights)
        meta = {k: v for k, v in embedded.items() if k != TENSORS_SHA256}
    meta = {**meta, "sha256": sha256}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def fill(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, optional: tuple[str, ...]) -> None:
    """Load `state` into `model`; only the `optional` keys may be missing."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in optional]
    if missing or unexpected:
        raise UserError(f"{Path(path).with_suffix('.safetensors')}: weights do not fit the config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_model(path: Path) -> tuple[NativeCodecModel, dict]:
    """Build the model from its JSON and load its weights; refuses files that do not match."""
    state, meta = read_weights(path)
    model = NativeCodecModel(CodecConfig.from_dict(meta["config"]))
    fill(model, state, path, TRAINING_ONLY)
    if "quantizer.cluster_size" not in state:
        model.quantizer.initialized.fill_(True)
    return model.eval(), meta
