"""Output-directory locks: one job writes a directory at a time (parts of a split job share it).

A lock is an `flock` on a hidden file in the directory, so it dies with its process (`kill -9`
included) and never needs cleaning; the file itself stays, empty.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from rvqtool.errors import UserError


def writable_directory(path: Path) -> None:
    """Create `path` if needed; refuse in one line when it cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the output directory ({exc.strerror or exc})")
    if not os.access(path, os.W_OK):
        raise UserError(f"{path}: output directory is not writable")


def acquire(path: Path, name: str = ".lock", shared: bool = False) -> int:
    """Hold `path/name` (exclusively, or shared); returns the descriptor to close when done."""
    try:
        fd = os.open(path / name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{path}: cannot write in the output directory ({exc.strerror or exc})")
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{path}: another job is writing here (it holds {name}); wait for it "
                        "to finish, or use another output directory")
    return fd


@contextlib.contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """The whole of `path` for this job, created if needed."""
    path = Path(path)
    writable_directory(path)
    fd = acquire(path)
    try:
        yield
    finally:
        os.close(fd)
