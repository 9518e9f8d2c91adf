"""The one progress bar: on a terminal it draws what each command's own bar drew (the columns
below are those bars' as they were), and anywhere else, or for fewer than two steps, nothing."""
from __future__ import annotations

import importlib
import io
import sys

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = importlib.import_module("rvqtool.cli.app")   # the package's `app` is the Typer app


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(progress: Progress, console: Console) -> str:
    with console.capture() as capture:
        console.print(progress.make_tasks_table(progress.tasks))
    return capture.get()


@pytest.fixture
def terminal(monkeypatch):
    console = Console(file=io.StringIO(), force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(app, "err", console)
    return console


@pytest.mark.parametrize("what,status,keep", [("encode", False, False), ("eval", False, False),
                                              ("train", True, True), ("tokenize", True, False)])
@pytest.mark.parametrize("verbose", [False, True])
def test_draws_what_each_bar_drew(terminal, monkeypatch, what, status, keep, verbose):
    monkeypatch.setattr(sys, "stderr", Terminal())   # here: pytest's capture sets sys.stderr between setup and call
    columns = [TextColumn(what), BarColumn(), MofNCompleteColumn(),
               *([TextColumn("{task.fields[status]}")] if status else []), TimeRemainingColumn()]
    before = Progress(*columns, console=terminal, transient=not (verbose or keep))
    task = before.add_task(what, total=10, status="")
    bar = app.ProgressBar(what, 10, verbose, status=status, keep=keep)
    assert bar.shown and bar._bar.live.transient == before.live.transient
    for step in range(3):
        text = f"loss {step}" if status else None
        bar.advance(text)
        before.update(task, advance=1, **({"status": text} if status else {}))
        assert drawn(bar._bar, terminal) == drawn(before, terminal)
    bar.update(7, "loss 7" if status else None)
    before.update(task, completed=7, **({"status": "loss 7"} if status else {}))
    assert drawn(bar._bar, terminal) == drawn(before, terminal)
    assert "7/10" in drawn(bar._bar, terminal)


def test_nothing_off_a_terminal_or_for_one_step(terminal, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not app.ProgressBar("encode", 1, True).shown
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with app.ProgressBar("encode", 10, True, status=True) as bar:
        bar.advance("x")
        bar.update(5)
    assert not bar.shown and terminal.file.getvalue() == ""
