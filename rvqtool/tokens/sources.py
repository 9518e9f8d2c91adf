"""Where a corpus comes from: directories (recursive, sorted), globs, manifests (.txt, .jsonl,
.csv, .tsv) whose extra columns travel with each file, and '-' (one path a line on stdin).

Each file gets an id: its path without the suffix, relative to the directory it was found in
(for a directory source), else as given; a manifest may give ids of its own. So the audio tree
`corpus/` and the code tree `rvq encode corpus/ -o codes/` made from it give the same ids.
An id is a name, never a path that something is written to (wds members are named by shard and
position), so '../x' or 'a/b' are fine; line breaks and other control characters are refused."""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rvqtool.batch import files_in
from rvqtool.errors import UserError

MANIFEST_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv")
PATH_KEYS = ("path", "audio_filepath", "audio", "file", "filename")
ID_KEYS = ("id", "key", "utt_id")
TEXT_KEYS = ("text", "transcript", "sentence")
UNSAFE_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")   # line breaks, tabs, other control characters


@dataclass(frozen=True)
class Source:
    path: str
    id: str
    text: str | None = None
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": self.path, "id": self.id, "text": self.text, "metadata": self.metadata}


def _stem_id(path: str) -> str:
    p = Path(os.path.normpath(path))
    return p.with_suffix("").as_posix() if p.suffix else p.as_posix()


def collect(inputs: list[str], suffixes: frozenset[str], stdin: TextIO | None = None) -> list[Source]:
    """All sources, in input order (directories sorted); refuses duplicate ids."""
    if not inputs:
        raise UserError("no inputs given")
    found: list[Source] = []
    for item in inputs:
        if item == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            found += [Source(line.strip(), _stem_id(line.strip())) for line in lines if line.strip()]
            continue
        path = Path(item)
        if path.is_dir():
            files = files_in(path, suffixes)
            if not files:
                raise UserError(f"{item}: no {'/'.join(sorted(suffixes))} files in this directory")
            found += [Source(str(p), _stem_id(str(p.relative_to(path)))) for p in files]
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.suffix.lower() not in suffixes and path.is_file():
            found += manifest(path)
        elif path.exists():
            found.append(Source(item, _stem_id(item)))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise UserError(f"{item}: no file matches this pattern")
            found += [Source(m, _stem_id(m)) for m in matches]
        else:
            raise UserError(f"{item}: no such file, directory or manifest")
    if not found:
        raise UserError("the inputs name no files")
    seen: dict[str, str] = {}
    for src in found:
        if UNSAFE_ID.search(src.id):
            raise UserError(f"the id {src.id!r} of {src.path!r} holds a line break or another control character: "
                            "ids must be one line of text (give it another in the manifest's id column)")
        if src.id in seen:
            raise UserError(f"two inputs share the id '{src.id}' ({seen[src.id]} and {src.path}): "
                            "list them in a manifest with an id column")
        seen[src.id] = src.path
    return found


def manifest(path: Path) -> list[Source]:
    """Rows of a manifest. .txt: one path a line ('#' comments); .jsonl: objects; .csv/.tsv: a
    header row. Paths are relative to the manifest's folder; columns other than path/id/text are
    carried along as metadata."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read manifest ({exc})")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        rows = [{"path": line.strip()} for line in text.splitlines() if line.strip() and not line.startswith("#")]
    elif suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})")
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: each line must be a JSON object")
            rows.append(row)
    else:
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
    sources = []
    for number, row in enumerate(rows, 1):
        key = next((k for k in PATH_KEYS if row.get(k)), None)
        if key is None:
            raise UserError(f"{path}: row {number} has no path (expected a column named {' or '.join(PATH_KEYS)})")
        file = Path(str(row[key]))
        file = file if file.is_absolute() else path.parent / file
        id_key = next((k for k in ID_KEYS if row.get(k) not in (None, "")), None)
        text_key = next((k for k in TEXT_KEYS if k in row), None)
        metadata = {k: v for k, v in row.items() if k not in (key, id_key, text_key)}
        sources.append(Source(str(file), str(row[id_key]) if id_key else _stem_id(str(row[key])),
                              None if text_key is None else row[text_key], metadata))
    return sources
