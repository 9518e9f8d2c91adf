"""Which files a command works on. Every command that takes inputs resolves them here, so a
directory, glob, manifest or '-' means the same to `rvq encode`, `eval`, `tokenize` and `train`.

An input is a directory (walked in sorted order for the command's suffixes; symlinked folders
not entered), a file, a glob (`'corpus/**/*.wav'`), a manifest (.txt: one path a line, '#'
comments; .jsonl: one object a line; .csv/.tsv: a header row) or '-' (paths on stdin, one a
line). A manifest's relative paths are taken from its folder; its id and text columns name the
file's id and text, and every other column travels along as metadata. An input named on the
command line must exist (or, for a glob, match); files listed in a manifest or on stdin are
checked when they are read, so that a batch reports a missing one and goes on.

Each file found is an `Input`. Its id is its path without the suffix: relative to the directory
it was found in, as written in the manifest or on stdin, else as given (a manifest may give ids
of its own). So the audio tree `corpus/` and the code tree `rvq encode corpus/ -o codes/` made
from it give the same ids."""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rvqtool.errors import UserError

MANIFEST_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv")
PATH_KEYS = ("path", "audio_filepath", "audio", "file", "filename")
ID_KEYS = ("id", "key", "utt_id")
TEXT_KEYS = ("text", "transcript", "sentence")
CODE_SUFFIXES = frozenset({".npy", ".rvq"})


@dataclass(frozen=True, slots=True)
class Input:
    path: str                  # where to read the file
    id: str
    name: str                  # how it was found: relative to its directory, as a manifest or stdin wrote it, or as given
    text: str | None = None    # a manifest's text column
    metadata: dict = field(default_factory=dict)   # a manifest's other columns
    walked: bool = False       # found in a directory: `name` is relative to that directory

    def to_dict(self) -> dict:
        """What a token job records of its file (plan.json, documents.jsonl)."""
        return {"path": self.path, "id": self.id, "text": self.text, "metadata": self.metadata}


def resolve(inputs: list[str], suffixes: frozenset[str], what: str = "", stdin: TextIO | None = None) -> list[Input]:
    """Every file the inputs name, in input order (each directory in sorted order). `suffixes`:
    the files a directory is searched for (any case); `what` names them in errors ("audio")."""
    if not inputs:
        raise UserError("no inputs given")
    found: list[Input] = []
    for item in inputs:
        if item == "-":
            found += _from_stdin(stdin or sys.stdin)
            continue
        try:
            mode = os.stat(item).st_mode
        except (OSError, ValueError):
            mode = None
        suffix = _suffix(os.path.basename(item.rstrip("/"))).lower()
        if mode is not None and stat.S_ISDIR(mode):
            found += _from_directory(item, suffixes, what)
        elif mode is not None and stat.S_ISREG(mode) and suffix in MANIFEST_SUFFIXES and suffix not in suffixes:
            found += manifest(Path(item))
        elif mode is not None:
            name = str(Path(item))
            found.append(Input(item, _stem_id(name), name))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not matches:
                raise UserError(f"{item}: no file matches this pattern")
            found += [Input(m, _stem_id(m), m) for m in matches]
        elif suffix in suffixes:
            raise UserError(f"{item}: no such file")
        else:
            raise UserError(f"{item}: no such file, directory or manifest")
    return found


def _from_stdin(stdin: TextIO) -> list[Input]:
    """'-': one path a line (blank lines skipped), each taken as written."""
    paths = [line.strip() for line in stdin.read().splitlines() if line.strip()]
    if not paths:
        raise UserError("-: no paths on stdin (give one a line, e.g. find corpus -name '*.flac' | rvq ...)")
    return [Input(p, _stem_id(p), p) for p in paths]


def _from_directory(item: str, suffixes: frozenset[str], what: str) -> list[Input]:
    root = str(Path(item))
    prefix = "" if root == "." else root if root.endswith("/") else root + "/"
    relative = walk(root, suffixes)
    if not relative:
        raise UserError(f"{item}: no {what or '/'.join(sorted(suffixes))} files in this directory")
    # a walked name is already normal (no '.', '..' or '//'), and its suffix is its last dot's
    return [Input(prefix + rel, rel[:rel.rfind(".")], rel, walked=True) for rel in relative]


def walk(directory: str, suffixes: frozenset[str]) -> list[str]:
    """The paths, relative to `directory` and '/'-joined, of the files below it whose suffix (any
    case) is one of `suffixes`, in sorted path order: what `sorted(p for p in
    Path(directory).rglob("*") if p.is_file() and ...)` gives (symlinked folders not entered,
    unreadable ones skipped), but one `scandir` per folder and no `stat` or `Path` per file."""
    found: list[str] = []
    stack = [(iter(_listing(directory)), "")]
    while stack:                                   # depth first, each folder's entries in name order
        entries, prefix = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
        elif entry.is_dir(follow_symlinks=False):
            stack.append((iter(_listing(entry.path)), prefix + entry.name + "/"))
        elif _suffix(entry.name).lower() in suffixes and entry.is_file():
            found.append(prefix + entry.name)
    return found


def _listing(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except PermissionError:
        return []


def _suffix(name: str) -> str:
    """A file name's suffix as `Path.suffix` gives it ('.wav'; '' for '.wav' alone or 'x.')."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def _stem_id(path: str) -> str:
    p = Path(os.path.normpath(path))
    return p.with_suffix("").as_posix() if p.suffix else p.as_posix()


def manifest(path: Path) -> list[Input]:
    """The files a manifest lists (see the module's docstring for the dialects)."""
    try:
        text = path.read_text()
        rows = _rows(path, text)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read manifest ({exc})")
    if not rows:
        raise UserError(f"{path}: the manifest lists no files")
    found = []
    for number, row in enumerate(rows, 1):
        key = next((k for k in PATH_KEYS if row.get(k)), None)
        if key is None:
            raise UserError(f"{path}: row {number} has no path (a manifest needs a 'path' column, or one "
                            f"named {', '.join(PATH_KEYS[1:-1])} or {PATH_KEYS[-1]})")
        name = str(row[key])
        file = Path(name)
        file = file if file.is_absolute() else path.parent / file
        id_key = next((k for k in ID_KEYS if row.get(k) not in (None, "")), None)
        text_key = next((k for k in TEXT_KEYS if k in row), None)
        metadata = {k: v for k, v in row.items() if k not in (key, id_key, text_key)}
        found.append(Input(str(file), str(row[id_key]) if id_key else _stem_id(name), name,
                           None if text_key is None else row[text_key], metadata))
    return found


def _rows(path: Path, text: str) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [{"path": line.strip()} for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if suffix == ".jsonl":
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
        return rows
    return list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
