"""Atomic writes: write to a temporary file in the target directory, then rename over the target.

A crash or error at any point leaves either the old file or no file, never a partial one. A
temporary is named `.NAME.PID-RANDOM.part.SUFFIX` (unique per writer, never mistaken for an output)
and `flock`-ed while its writer lives, so that `remove_abandoned` deletes only what a killed writer
left behind (`kill -9` runs no cleanup) and never a live writer's file.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from pathlib import Path
from typing import Iterator

_TEMPORARY = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.part(\.[^.]*)?")


def temporary_name(target: Path) -> str:
    """A name no other writer picks (pid and random bits); it keeps the suffix, which writers such
    as `np.save` and soundfile go by."""
    return f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.part{target.suffix}"


@contextlib.contextmanager
def atomic_path(target: Path, durable: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` if the block succeeds.

    `durable`: the data and the rename are also flushed to the disk (fsync), for files whose loss
    in a power cut costs more than the fsyncs (models, training state)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(20, "a parent of the output is a file, not a directory", str(target.parent))
    tmp_path = target.with_name(temporary_name(target))
    lock = os.open(tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        if durable:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, target)
        if durable:
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        os.close(lock)


def remove_abandoned(directory: Path) -> None:
    """Delete the temporaries in `directory` whose writer is gone (no one holds their lock): one
    pass over the directory, for a job to run once per output directory before it starts."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if not _TEMPORARY.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
        except (BlockingIOError, FileNotFoundError):
            pass                       # a live writer's, or already gone
        finally:
            os.close(fd)
