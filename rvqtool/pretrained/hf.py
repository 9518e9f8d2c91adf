"""`--model hf:DIR`: a local transformers folder of an audio codec, run by transformers itself.

DIR holds `config.json` (whose `model_type` names the family) and the weights `save_pretrained`
wrote. Nothing is downloaded: the hub is put offline and files are read from DIR only. The
model's identity is a sha256 over config.json and the weight files, so code files made with it
refuse any other model, a re-saved or fine-tuned one included. A family that computes features
from the audio besides the audio (XCodec2's and NeuCodec's mel features) also needs the folder's
preprocessor_config.json, which the hash then covers too. Needs `pip install 'rvqtool[hf]'`
(and torchaudio for their feature extractors).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from rvqtool.config import CodecConfig
from rvqtool.io.hashing import file_sha256
from rvqtool.errors import UserError
from rvqtool.pretrained.hf_families import (DacFamily, EncodecFamily, HFCodecModel, MimiFamily, NeuCodecFamily,
                                            Xcodec2Family, XcodecFamily)

# model_type in config.json -> (transformers class, our family)
FAMILIES: dict[str, tuple[str, type[HFCodecModel]]] = {
    "dac": ("DacModel", DacFamily),
    "encodec": ("EncodecModel", EncodecFamily),
    "mimi": ("MimiModel", MimiFamily),
    "neucodec": ("NeuCodecModel", NeuCodecFamily),
    "xcodec": ("XcodecModel", XcodecFamily),
    "xcodec2": ("Xcodec2Model", Xcodec2Family),
}
FEATURES_FILE = "preprocessor_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def is_hf_folder(path: str | Path) -> bool:
    """A folder with a config.json that names a model_type: what `hf:DIR` expects."""
    return model_type(Path(path)) is not None


def model_type(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    kind = config.get("model_type") if isinstance(config, dict) else None
    return kind if isinstance(kind, str) else None


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def folder_sha256(folder: Path, with_features: bool = False) -> str:
    """One hash over config.json, every weight file and (for a family that uses one) the feature
    extractor's config, each by name and content."""
    digest = hashlib.sha256()
    features = [folder / FEATURES_FILE] if with_features else []
    for path in [folder / "config.json", *weight_files(folder), *features]:
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def load_hf(folder: str | Path) -> tuple[HFCodecModel, dict]:
    """The codec in `folder` as rvqtool's model, and the meta a Codec needs (name, sha256)."""
    folder = Path(folder).expanduser()
    supported = ", ".join(sorted(FAMILIES))
    kind = model_type(folder) if folder.is_dir() else None
    if kind is None:
        raise UserError(f"hf:{folder}: not a transformers model folder (no config.json with a model_type)")
    if kind not in FAMILIES:
        raise UserError(f"hf:{folder}: model type '{kind}' is not an audio codec rvqtool runs "
                        f"through transformers (supported: {supported})")
    if not weight_files(folder):
        raise UserError(f"hf:{folder}: no weights beside config.json (model.safetensors or pytorch_model.bin)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise UserError("hf: models need the transformers package: pip install 'rvqtool[hf]'") from None
    class_name, family = FAMILIES[kind]
    if family.feature_extractor is not None:
        if not (folder / FEATURES_FILE).is_file():
            raise UserError(f"hf:{folder}: no {FEATURES_FILE} beside config.json: a {kind} model needs its "
                            "feature extractor's config (save it with the feature extractor's save_pretrained)")
        _require_torchaudio(folder)   # before transformers imports the model, which imports torchaudio too
    model_class = getattr(transformers, class_name, None)
    if model_class is None:
        raise UserError(f"hf:{folder}: transformers {transformers.__version__} has no {class_name}: "
                        "upgrade it (pip install -U transformers)")
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()   # quiet by default, as every rvq command
    try:
        hf_model = model_class.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        features = _load_features(transformers, folder, family.feature_extractor)
    except Exception as exc:  # noqa: BLE001 -- a broken folder fails in many ways (safetensors' own errors too)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"hf:{folder}: transformers cannot load this {kind} model: {reason}") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    _refuse_unsupported(folder, kind, hf_model.config)
    model = family(hf_model, family.codec_config(hf_model.config), features)
    if features is not None:
        _refuse_other_features(folder, kind, model.config, features)
    sha256 = folder_sha256(folder, with_features=features is not None)
    return model.eval(), {"name": f"hf:{kind}", "sha256": sha256}


def _require_torchaudio(folder: Path) -> None:
    try:
        import torchaudio  # noqa: F401 -- XCodec2's, NeuCodec's features are torchaudio's kaldi fbank
    except Exception:  # noqa: BLE001 -- a torchaudio built for another torch fails with OSError too
        raise UserError(f"hf:{folder}: this model's feature extractor needs torchaudio: pip install --no-deps "
                        "torchaudio (--no-deps keeps your torch; if its native library then fails to load, "
                        "delete torchaudio/lib/*.so: the kaldi fbank used here is pure Python)") from None


def _load_features(transformers, folder: Path, class_name: str | None):
    """The family's feature extractor from the folder (None for a family that needs none)."""
    if class_name is None:
        return None
    return getattr(transformers, class_name).from_pretrained(folder, local_files_only=True)


def _refuse_unsupported(folder: Path, kind: str, config) -> None:
    """Variants whose codes need more than codes to decode."""
    if kind == "encodec" and (config.normalize or config.chunk_length_s is not None):
        raise UserError(f"hf:{folder}: an EnCodec model with normalisation or chunks (the 48 kHz one): its "
                        "codes need per-chunk scales; use encodec_48khz:PATH with the original checkpoint")


def _refuse_other_features(folder: Path, kind: str, config: CodecConfig, features) -> None:
    """A feature extractor saved for another rate or frame than the model's input."""
    rates, hops = (features.sampling_rate, config.sample_rate), (features.hop_length, config.hop_length)
    if rates[0] != rates[1] or hops[0] != hops[1]:
        raise UserError(f"hf:{folder}: its {FEATURES_FILE} is for {rates[0]} Hz and {hops[0]} samples a frame, "
                        f"the {kind} model for {rates[1]} Hz and {hops[1]}: save the model's own feature extractor")


def load(kind: str, path: Path) -> tuple[HFCodecModel, dict]:
    """The registry's entry (`hf:DIR`): `load_hf`."""
    return load_hf(path)
