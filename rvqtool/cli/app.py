"""The `rvq` Typer app, its shared options and error handling; commands live beside it.

"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rvqtool.errors import UsageError, UserError

try:  # recent typer carries its own copy of click (typer._click) and no longer installs click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer is built on click itself
    from click import ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Neural audio codec: turn audio into discrete codes and back.\n\n"
                       "Example: rvq encode speech.wav -o speech.npy && rvq decode speech.npy -o out.wav")
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per message, however long

MODEL = typer.Option("default", "--model", "-m", metavar="NAME|PATH", help="Shipped model (default: the newest; default-v1 pins a version; `rvq info` lists them) or path to a .safetensors model.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Say what is done, file by file.")


def _print_version(value: bool) -> None:
    """`rvq --version`: the installed package's version, from its metadata (one source of truth)."""
    if value:
        from importlib.metadata import version

        typer.echo(f"rvq {version('rvqtool')}")
        raise typer.Exit()


@app.callback()
def _global_options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """Options that come before any command (the app's help text is the Typer(help=...) above)."""


class ProgressBar:
    """The one progress bar of every command: WHAT, the bar, done/total, an optional status text
    (e.g. the loss, hours of audio) and the time left, on stderr. Shown only on a terminal and for
    two or more steps; it disappears when done unless -v asked for more or `keep` (its last
    status is the run's result). Everywhere else each method does nothing, so callers need no checks.

        with ProgressBar("encode", len(jobs), verbose) as bar:
            for job in jobs:
                ...
                bar.advance()
    """

    def __init__(self, what: str, total: int, verbose: bool, status: bool = False, keep: bool = False):
        self._bar = None
        if total >= 2 and sys.stderr.isatty():
            columns = [TextColumn(what), BarColumn(), MofNCompleteColumn()]
            if status:
                columns.append(TextColumn("{task.fields[status]}"))
            self._bar = Progress(*columns, TimeRemainingColumn(), console=err, transient=not (verbose or keep))
            self._task = self._bar.add_task(what, total=total, status="")

    @property
    def shown(self) -> bool:
        """Whether there is a bar on the screen (else a caller may print its steps as lines)."""
        return self._bar is not None

    def start(self) -> "ProgressBar":
        """Draw it (for callers whose start and end are two callbacks; others use `with`)."""
        if self._bar is not None:
            self._bar.start()
        return self

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> "ProgressBar":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def advance(self, status: str | None = None) -> None:
        """One more step done (and the status text, if given)."""
        if self._bar is not None:
            if status is not None:
                self._bar.update(self._task, status=status)
            self._bar.advance(self._task)

    def update(self, completed: int, status: str | None = None) -> None:
        """`completed` steps done in all (a resumed run starts part way)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, **({} if status is None else {"status": status}))


def run_file_jobs(jobs, work, overwrite: bool, verbose: bool, what: str, complete: Callable[[str], bool] = os.path.exists,
                  output: str | None = None) -> None:
    """`complete(target)`: whether an existing output is whole (a re-run skips it), e.g. a code file pair.

    A directory job (`output`, when the jobs mirror inputs into it) holds the directory's lock, so a
    second job on it is refused instead of mixing its files in, and an output that cannot be
    written is refused once, not once per file."""
    if output is not None and any(job.resumable for job in jobs):
        from rvqtool.io.locks import locked_directory

        with locked_directory(Path(output)):
            _run_file_jobs(jobs, work, overwrite, verbose, what, complete)
    else:
        _run_file_jobs(jobs, work, overwrite, verbose, what, complete)


def _run_file_jobs(jobs, work, overwrite: bool, verbose: bool, what: str, complete: Callable[[str], bool]) -> None:
    from rvqtool import file_jobs
    from rvqtool.io.atomic import remove_abandoned

    for directory in {Path(job.target).parent for job in jobs if job.target != "-"}:
        remove_abandoned(directory)  # what killed runs left: once per directory, before anything is written

    def done(job: file_jobs.FileJob) -> bool:
        return job.resumable and not overwrite and complete(job.target)

    def failed(job: file_jobs.FileJob, message: str) -> None:
        err.print(f"error: {message}", markup=False)

    with ProgressBar(what, len(jobs), verbose) as bar:
        def step(job: file_jobs.FileJob) -> None:
            bar.advance()
            if verbose:
                err.print(f"{job.source} -> {job.target}", markup=False)

        tally = file_jobs.run(jobs, work, done, failed, step)
    if verbose or (tally.failed and len(jobs) > 1):
        err.print(f"{what}: {tally.done} done, {tally.skipped} already done, {len(tally.failed)} failed",
                  markup=False)
    if tally.failed:
        raise typer.Exit(1)


def main() -> None:
    """Entry point: runs the app and turns every expected failure into one line on stderr."""
    verbose = "-v" in sys.argv or "--verbose" in sys.argv
    try:
        # without standalone mode, an Exit raised by a command (e.g. a batch with failures) comes
        # back as the return value rather than as an exception
        code = app(standalone_mode=False)
    except UserError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug or an environment fault: still one line unless -v
        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if verbose:
            raise
        err.print(f"error: unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
