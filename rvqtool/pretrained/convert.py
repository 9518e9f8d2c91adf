"""`rvq convert`: a foreign checkpoint -> our safetensors + JSON (no pickle needed to use it again)."""
from __future__ import annotations

from pathlib import Path

from rvqtool.checkpoint import save_model
from rvqtool.errors import UserError
from rvqtool.registry import FAMILIES, KINDS, load_foreign, parse_spec


def convert(spec: str, output: str | Path) -> Path:
    """Load `KIND:PATH` and write it as OUTPUT.safetensors + OUTPUT.json; returns the weights path."""
    parsed = parse_spec(spec)
    if parsed is None:
        raise UserError(f"{spec}: name the checkpoint as KIND:PATH with KIND one of {', '.join(KINDS)}")
    if FAMILIES[KINDS[parsed[0]]].build is None:
        raise UserError(f"{spec}: {parsed[0]}: models run by transformers are not converted: use --model {spec}")
    model, meta = load_foreign(*parsed)
    output = Path(output)
    if output.suffix not in ("", ".safetensors"):
        raise UserError(f"{output}: the converted model is written as NAME.safetensors + NAME.json")
    try:
        return save_model(model, output.with_suffix(".safetensors"), meta["name"],
                          extra_meta={"source": {"file": parsed[1].name, "sha256": meta["sha256"]}})
    except OSError as exc:
        raise UserError(f"{output}: cannot write ({exc.strerror or exc})")
