"""SHA-256 of whole files, read in pieces so memory stays flat whatever their size: a model's
identity, a shard's record, a `.npy` checked against its sidecar."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

BLOCK_BYTES = 1 << 22     # read at a time


def file_sha256(file: str | Path | BinaryIO) -> str:
    """Hex SHA-256 of a file by path, or of an open file (read with pread: its position is left
    where it was, so a reader can go on from there)."""
    digest = hashlib.sha256()
    if isinstance(file, (str, Path)):
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(BLOCK_BYTES), b""):
                digest.update(block)
        return digest.hexdigest()
    offset = 0
    while block := os.pread(file.fileno(), BLOCK_BYTES, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def file_digest(path: Path) -> dict:
    """{"bytes", "sha256"} of a finished file: what a shard record keeps to tell it whole."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}
