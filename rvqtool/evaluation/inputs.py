"""Which files to evaluate, and the category each belongs to (for per-category means).

The inputs are resolved as every command's are (`rvqtool.io.inputs`). A file found in a
directory belongs to the category named by its first sub-directory (speech/, music/, env/); a
manifest row to its `category` column, and to its `subset` column's finer group (e.g.
real-wideband speech), whose means are reported apart; any other file to none ("-").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rvqtool.io.audio import AUDIO_SUFFIXES
from rvqtool.io.inputs import resolve as resolve_inputs

UNCATEGORISED = "-"


@dataclass(frozen=True)
class Item:
    path: Path
    name: str        # how the file is shown: relative to its directory or manifest
    category: str
    subset: str = ""  # from a manifest's `subset` column; "" when none


def resolve(inputs: list[str], stdin: TextIO | None = None) -> list[Item]:
    """The files to evaluate, in order, each once (the first mention wins)."""
    items: list[Item] = []
    seen: set[Path] = set()
    for found in resolve_inputs(inputs, AUDIO_SUFFIXES, "audio", stdin):
        path = Path(found.path)
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if found.walked:
            category = found.name.split("/", 1)[0] if "/" in found.name else UNCATEGORISED
        else:
            category = found.metadata.get("category") or UNCATEGORISED
        items.append(Item(path, found.name, category, found.metadata.get("subset") or ""))
    return items
