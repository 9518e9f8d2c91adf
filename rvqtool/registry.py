"""Which model a name stands for, and the model itself: the one place that resolves "NAME", "PATH"
or "KIND:PATH" to a model and its meta (name, sha256).

- a shipped name: a version ("default-v1") or an alias for a line's newest version ("default"),
  the files in rvqtool/shipped/;
- a path to an rvqtool model file (NAME.safetensors [+ NAME.json]): rvqtool's own architecture,
  or a foreign one converted by `rvq convert` (its config names the architecture);
- KIND:PATH, a foreign checkpoint read as its own project writes it (`encodec_24khz:FILE.th`,
  `mimi:tokenizer-*.safetensors`, `snac_24khz:DIR`), or `hf:DIR`, a transformers folder run by
  transformers itself.

Foreign codec families register in `FAMILIES`, one entry each: the KINDs that name their
checkpoints, the loader for those, and the builder that rebuilds our module from the config of a
converted file. Adding a family is one entry here plus its module, whose model keeps the
contract of rvqtool/model/interface.py.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, NamedTuple

from rvqtool.checkpoint import fill, load_model, read_meta, read_weights
from rvqtool.io.hashing import file_sha256
from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.io.codes import CodesMeta
from rvqtool.model.interface import CodecModel
from rvqtool.pretrained import dac, encodec, hf, mimi, snac

# Shipped models, oldest first: each VERSION is rvqtool/shipped/VERSION.safetensors + VERSION.json, and
# the name before "-v" ("default") is an alias for the line's newest version. A shipped file is
# never changed or removed: code files record the sha256 of the weights that made them, and decoding
# finds the version by it. To ship a new one, add its files and append its name here.
SHIPPED_VERSIONS = ("default-v1", "default-v2", "default-v3")
SHIPPED_DIR = Path(str(resources.files("rvqtool") / "shipped"))


@dataclass(frozen=True)
class Family:
    """A foreign codec family run on our modules."""

    kinds: tuple[str, ...]                                # the KINDs of KIND:PATH, e.g. ("encodec_24khz", ...)
    load: Callable[[str, Path], tuple[CodecModel, dict]]  # (kind, path) -> our model holding its weights, and
                                                          # its meta: name (the kind), sha256 (its identity)
    build: Callable[[CodecConfig], CodecModel] | None     # a converted file's config -> the module its weights
                                                          # fill; None: not convertible (hf: transformers' own)
    optional: frozenset[str] = frozenset()                # state names a converted file may lack
    safetensors: bool = False                             # its checkpoints are .safetensors too (Mimi's),
                                                          # told from ours by rvqtool's metadata


def _hashed(load: Callable[[str, Path], CodecModel]) -> Callable[[str, Path], tuple[CodecModel, dict]]:
    """A loader of a one-file checkpoint, whose identity is the file's hash."""
    return lambda kind, path: (load(kind, path), {"name": kind, "sha256": file_sha256(path)})


# architecture name (a converted file's config.extra["architecture"]) -> its family
FAMILIES: dict[str, Family] = {
    "encodec": Family(tuple(encodec.CONFIGS), _hashed(encodec.load), encodec.build, encodec.OURS_ONLY),
    "dac": Family(tuple(dac.RATES), _hashed(dac.load), dac.build),
    "mimi": Family((mimi.KIND,), mimi.load, mimi.build, safetensors=True),
    "snac": Family(tuple(snac.RATES), snac.load, snac.build),
    "hf": Family(("hf",), hf.load, None),
}
# KIND -> the architecture it belongs to, in the families' order
KINDS: dict[str, str] = {kind: name for name, family in FAMILIES.items() for kind in family.kinds}


class ResolvedModel(NamedTuple):
    model: CodecModel
    meta: dict        # "name" (what codes record), "sha256" (the model's identity), config and the rest
    path: Path        # where it was read from


# ---- shipped models ----------------------------------------------------------------------------
def _line(name: str) -> str:
    """"default-v2" -> "default"; a name without a version number is its own line."""
    match = re.fullmatch(r"(.+)-v\d+", name)
    return match.group(1) if match else name


def shipped_aliases() -> dict[str, str]:
    """Alias -> the newest version it stands for ({"default": "default-v2"})."""
    return {_line(version): version for version in SHIPPED_VERSIONS}  # later versions win


def shipped_version(name: str | Path) -> str | None:
    """The version a shipped name (a version or an alias) stands for; None for anything else."""
    name = str(name)
    return name if name in SHIPPED_VERSIONS else shipped_aliases().get(name)


def shipped_by_sha256(sha256: str) -> str | None:
    """The shipped version whose weights have this hash (what code files record), if any."""
    return _shipped_hashes(SHIPPED_DIR, SHIPPED_VERSIONS).get(sha256)


@functools.lru_cache(maxsize=4)
def _shipped_hashes(shipped_dir: Path, versions: tuple[str, ...]) -> dict[str, str]:
    """sha256 -> version, read once: a batch decode asks for every file, and shipped files never change.
    From the JSON each shipped file has beside it (tests/test_checkpoint.py holds it to the file's
    hash), so that naming a version costs no hashing of a one-file model's weights."""
    return {json.loads((shipped_dir / f"{version}.json").read_text())["sha256"]: version for version in versions}


def is_shipped_file(path: str | Path) -> bool:
    """Whether `path` lies among the shipped models (codes then record no path: the hash finds it)."""
    return Path(path).resolve().parent == SHIPPED_DIR.resolve()


# ---- names -> files ----------------------------------------------------------------------------
def model_path(name_or_path: str | Path) -> Path:
    """Shipped model name -> its file in the package; anything else is taken as a path."""
    version = shipped_version(name_or_path)
    if version is not None:
        return SHIPPED_DIR / f"{version}.safetensors"
    path = Path(name_or_path)
    if path.suffix not in (".safetensors", ".json"):
        path = path.with_name(path.name + ".safetensors")
    if not path.exists():
        names = ", ".join([*shipped_aliases(), *SHIPPED_VERSIONS])
        raise UserError(f"model '{name_or_path}' not found: give a shipped name ({names}) "
                        "or the path of a .safetensors file with its .json beside it")
    return path.with_suffix(".safetensors")


def parse_spec(name: str | Path) -> tuple[str, Path] | None:
    """'encodec_24khz:/path/file.th' -> ('encodec_24khz', Path); anything else -> None."""
    kind, sep, rest = str(name).partition(":")
    if not sep or kind not in KINDS:
        return None
    if not rest:
        raise UserError(f"--model {name}: give the checkpoint's path after '{kind}:'")
    return kind, Path(rest).expanduser()


def model_for_codes(meta: CodesMeta, name: str = "codes") -> str:
    """What to decode codes with when no model is given: the shipped version with their hash, whatever
    name they record ("default" before versions), else the model file they were made from."""
    version = shipped_by_sha256(meta.model_sha256)
    if version is not None:
        return version
    recorded = Path(meta.model_path) if meta.model_path else None
    if recorded is not None and recorded.exists() and not is_shipped_file(recorded):
        return _model_argument(meta, meta.model_path)
    made_by = f"{name}: made by model '{meta.model}' ({meta.model_sha256[:12]})"
    if _line(meta.model) in shipped_aliases():
        raise UserError(f"{made_by}, which no model shipped with this rvqtool matches "
                        f"({', '.join(SHIPPED_VERSIONS)}): pass --model PATH to the model that made them")
    raise UserError(f"{made_by}, which is not shipped and not at {meta.model_path or 'a recorded path'}: "
                    f"pass --model {_model_argument(meta, 'PATH')}")


def _model_argument(meta: CodesMeta, path: str) -> str:
    """How --model names the file that made these codes: KIND:PATH for a foreign checkpoint (the
    file alone does not say how to read it), PATH for our own model files, converted ones included.
    Ours are .safetensors files; where a family's checkpoints are too (Mimi's), ours are those
    that hold rvqtool's metadata (one that is gone: a checkpoint). A folder is a checkpoint."""
    kind = "hf" if meta.model.startswith("hf:") else meta.model   # hf codes record "hf:MODEL_TYPE"
    if kind not in KINDS:
        return path
    recorded = Path(meta.model_path)
    ours = recorded.suffix == ".safetensors" and not recorded.is_dir()
    if ours and FAMILIES[KINDS[kind]].safetensors:
        ours = recorded.is_file() and _is_model_file(recorded)
    return path if ours else f"{kind}:{path}"


def _is_model_file(path: Path) -> bool:
    """Whether `path` is an rvqtool model file (weights with rvqtool's metadata)."""
    try:
        read_meta(path)
    except UserError:
        return False
    return True


# ---- loading -----------------------------------------------------------------------------------
def resolve_model(name_or_path: str | Path) -> ResolvedModel:
    """The model a shipped name, a model file or a KIND:PATH checkpoint stands for."""
    spec = parse_spec(name_or_path)
    if spec is not None:
        model, meta = load_foreign(*spec)
        return ResolvedModel(model, meta, spec[1])
    path = model_path(name_or_path)
    model, meta = load_model_file(path)
    version = shipped_version(name_or_path)
    if version is not None:  # codes record the version, never the alias, whatever the JSON says
        meta = {**meta, "name": version}
    return ResolvedModel(model, meta, path)


def load_foreign(kind: str, path: Path) -> tuple[CodecModel, dict]:
    """A foreign checkpoint as our model, and the meta a Codec needs (name, content hash)."""
    model, meta = FAMILIES[KINDS[kind]].load(kind, path)
    return model.eval(), meta


def load_model_file(path: Path) -> tuple[CodecModel, dict]:
    """An rvqtool model file: our own architecture, or a converted foreign one."""
    meta = read_meta(path)
    if "architecture" not in meta["config"].get("extra", {}):
        return load_model(path)
    state, meta = read_weights(path)
    config = CodecConfig.from_dict(meta["config"])
    family = FAMILIES.get(config.extra["architecture"])
    if family is None or family.build is None:
        raise UserError(f"unknown model architecture {config.extra['architecture']!r}")
    model = family.build(config)
    fill(model, state, path, tuple(family.optional))
    return model.eval(), meta
