"""Many files in, many files out: map inputs to outputs (mirroring directory trees), run a job
per file, report failures and go on, and skip outputs a previous run already finished."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rvqtool.errors import UsageError, UserError


@dataclass(frozen=True)
class Job:
    source: str            # a path, or "-" for stdin
    target: str            # a path, or "-" for stdout
    resumable: bool = False  # part of a directory job: an existing target means done


@dataclass
class Outcome:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _suffix(name: str) -> str:
    """A file name's suffix as `Path.suffix` gives it ('.wav'; '' for '.wav' alone or 'x.')."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def files_in(directory: Path, suffixes: frozenset[str]) -> list[Path]:
    """The files below `directory` whose suffix (any case) is one of `suffixes`, in sorted path order:
    what `sorted(p for p in directory.rglob("*") if p.is_file() and ...)` gives (symlinked folders not
    entered, unreadable ones skipped), but one `scandir` per folder instead of a `stat` per file."""
    found: list[Path] = []
    stack = [iter(_listing(str(directory)))]
    while stack:                                   # depth first, each folder's entries in name order
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.is_dir(follow_symlinks=False):
            stack.append(iter(_listing(entry.path)))
        elif _suffix(entry.name).lower() in suffixes and entry.is_file():
            found.append(Path(entry.path))
    return found


def _listing(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except PermissionError:
        return []


def plan(inputs: list[str], output: str, in_suffixes: frozenset[str], out_suffix: str) -> list[Job]:
    """One job per input file. A single file (or '-') goes to `output` as named unless `output` is
    an existing directory or ends in '/'; otherwise `output` is a directory that mirrors the
    inputs: DIR/a/b.wav -> OUTPUT/a/b<out_suffix>, a plain file x.wav -> OUTPUT/x<out_suffix>."""
    if not inputs:
        raise UserError("no inputs given")
    if "-" in inputs and len(inputs) > 1:
        raise UsageError("'-' (stdin) must be the only input")
    out_is_dir = output.endswith("/") or Path(output).is_dir()
    single = len(inputs) == 1 and (inputs[0] == "-" or not Path(inputs[0]).is_dir())
    if single and not out_is_dir:
        return [Job(inputs[0], output)]
    if output == "-":
        raise UsageError("-o - (stdout) takes a single input")
    if inputs == ["-"]:
        raise UserError("reading stdin needs an output file, not a directory")
    jobs: list[Job] = []
    for item in inputs:
        src = Path(item)
        if src.is_dir():
            files = files_in(src, in_suffixes)
            if not files:
                raise UserError(f"{item}: no {'/'.join(sorted(in_suffixes))} files in this directory")
            jobs += [Job(str(p), str(Path(output) / p.relative_to(src).with_suffix(out_suffix)), True) for p in files]
        else:
            jobs.append(Job(item, str(Path(output) / (src.stem + out_suffix)), True))
    counts = Counter(job.target for job in jobs)
    clash = next((job.target for job in jobs if counts[job.target] > 1), None)
    if clash:
        raise UserError(f"two inputs would both write {clash}; give them separate output directories")
    return jobs


def run(jobs: list[Job], work: Callable[[Job], None], done: Callable[[Job], bool],
        on_failure: Callable[[Job, str], None], on_progress: Callable[[Job], None] = lambda j: None) -> Outcome:
    """Run `work` on every job whose output is not `done`; failures are reported and skipped."""
    outcome = Outcome()
    for job in jobs:
        if done(job):
            outcome.skipped += 1
        else:
            try:
                work(job)
                outcome.done += 1
            except UserError as exc:
                outcome.failed.append((job.source, str(exc)))
                on_failure(job, str(exc))
            except Exception as exc:  # a fault we did not foresee still costs only this file
                message = f"{job.source}: unexpected {type(exc).__name__}: {exc}"
                outcome.failed.append((job.source, message))
                on_failure(job, message)
        on_progress(job)
    return outcome
