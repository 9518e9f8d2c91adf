"""Run one command over many files: map each input file to its output file (mirroring directory
trees), run a job per file, report failures and go on, and skip outputs a previous run finished.
`rvq encode` and `rvq decode` are built on it; which files the inputs name is `io.inputs`'s job."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rvqtool.errors import Failure, UsageError, UserError
from rvqtool.io.inputs import resolve


@dataclass(frozen=True)
class FileJob:
    """One input file turned into one output file."""
    source: str            # a path, or "-" for stdin
    target: str            # a path, or "-" for stdout
    resumable: bool = False  # part of a directory job: an existing target means done


@dataclass
class Tally:
    """What a run of file jobs did: how many were done, skipped as already done, and failed (why)."""
    done: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)


def plan(inputs: list[str], output: str, in_suffixes: frozenset[str], out_suffix: str, what: str = "") -> list[FileJob]:
    """One job per input file. A single input that is not a directory (or '-', the data itself on
    stdin) goes to `output` as named unless `output` is an existing directory or ends in '/';
    otherwise `output` is a directory: DIR/a/b.wav -> OUTPUT/a/b<out_suffix>, and any other file
    (named, matched by a glob, listed in a manifest) x.wav -> OUTPUT/x<out_suffix>."""
    if not inputs:
        raise UserError("no inputs given")
    if "-" in inputs and len(inputs) > 1:
        raise UsageError("'-' (stdin) must be the only input")
    out_is_dir = output.endswith("/") or Path(output).is_dir()
    single = len(inputs) == 1 and (inputs[0] == "-" or not Path(inputs[0]).is_dir())
    if single and not out_is_dir:
        return [FileJob(inputs[0], output)]
    if output == "-":
        raise UsageError("-o - (stdout) takes a single input")
    if inputs == ["-"]:
        raise UserError("reading stdin needs an output file, not a directory")
    root = str(Path(output))
    prefix = "" if root == "." else root if root.endswith("/") else root + "/"
    jobs = [FileJob(item.path, prefix + item.name[:item.name.rfind(".")] + out_suffix if item.walked
                    else prefix + Path(item.path).stem + out_suffix, True)
            for item in resolve(inputs, in_suffixes, what)]
    counts = Counter(job.target for job in jobs)
    clash = next((job.target for job in jobs if counts[job.target] > 1), None)
    if clash:
        raise UserError(f"two inputs would both write {clash}; give them separate output directories")
    return jobs


def run(jobs: list[FileJob], work: Callable[[FileJob], None], done: Callable[[FileJob], bool],
        on_failure: Callable[[FileJob, str], None], on_progress: Callable[[FileJob], None] = lambda j: None) -> Tally:
    """Run `work` on every job whose output is not `done`; failures are reported and skipped."""
    tally = Tally()
    for job in jobs:
        if done(job):
            tally.skipped += 1
        else:
            try:
                work(job)
                tally.done += 1
            except Exception as exc:  # noqa: BLE001 -- a fault we did not foresee still costs only this file
                failure = Failure.of(job.source, exc)
                tally.failed.append(failure)
                on_failure(job, failure.reason)
        on_progress(job)
    return tally
