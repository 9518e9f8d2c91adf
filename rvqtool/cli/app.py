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


def progress_for(total: int, verbose: bool) -> Progress | None:
    if total < 2 or not sys.stderr.isatty():
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=not verbose)


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
    progress = progress_for(len(jobs), verbose)
    task = progress.add_task(what, total=len(jobs)) if progress else None

    def done(job: file_jobs.FileJob) -> bool:
        return job.resumable and not overwrite and complete(job.target)

    def failed(job: file_jobs.FileJob, message: str) -> None:
        err.print(f"error: {message}", markup=False)

    def step(job: file_jobs.FileJob) -> None:
        if progress:
            progress.advance(task)
        if verbose:
            err.print(f"{job.source} -> {job.target}", markup=False)

    if progress:
        progress.start()
    try:
        tally = file_jobs.run(jobs, work, done, failed, step)
    finally:
        if progress:
            progress.stop()
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
