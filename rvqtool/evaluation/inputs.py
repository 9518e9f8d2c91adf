"""Which files to evaluate, and the category each belongs to (for per-category means).

An input is an audio file, a directory (searched recursively; a file's category is the name of
its first sub-directory, as in speech/, music/, env/), or a manifest .csv with a `file` column
(paths relative to the manifest), an optional `category` column and an optional `subset` column (a
finer group, e.g. real-wideband speech, whose means are reported apart).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from rvqtool.errors import UserError
from rvqtool.io.audio import AUDIO_SUFFIXES

UNCATEGORISED = "-"


@dataclass(frozen=True)
class Item:
    path: Path
    name: str        # how the file is shown: relative to its directory or manifest
    category: str
    subset: str = ""  # from a manifest's `subset` column; "" when none


def _from_manifest(manifest: Path) -> list[Item]:
    try:
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{manifest}: cannot read the manifest ({exc})")
    if not rows or "file" not in rows[0]:
        raise UserError(f"{manifest}: a manifest needs a header with a 'file' column (and optionally 'category')")
    return [Item(manifest.parent / row["file"], row["file"], row.get("category") or UNCATEGORISED, row.get("subset") or "")
            for row in rows]


def _from_directory(root: Path) -> list[Item]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UserError(f"{root}: no audio files in this directory")
    items = []
    for path in files:
        relative = path.relative_to(root)
        category = relative.parts[0] if len(relative.parts) > 1 else UNCATEGORISED
        items.append(Item(path, str(relative), category))
    return items


def resolve(inputs: list[str]) -> list[Item]:
    """The files to evaluate, in order, each once."""
    if not inputs:
        raise UserError("no inputs given")
    items: list[Item] = []
    for item in inputs:
        path = Path(item)
        if item == "-":
            raise UserError("rvq eval needs files (it reads each one twice), not stdin")
        if path.is_dir():
            items += _from_directory(path)
        elif path.suffix.lower() == ".csv":
            items += _from_manifest(path)
        else:
            items.append(Item(path, str(path), UNCATEGORISED))
    seen: set[Path] = set()
    unique = []
    for item in items:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
