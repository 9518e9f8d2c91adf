"""Code files of any length in flat memory: written window by window as they are encoded, and read
window by window as they are decoded.

The formats are those of `rvqtool.io.codes` (which owns them); this module only streams them.
A `.npy` holds [channels, n_q, T] row by row, while windows arrive frame by frame, so encoded
windows wait in an unnamed temporary file (disk and page cache, not the process's memory) and are
laid out row by row when the last one is in. A 10-hour file's codes (21.6 M) never sit in memory.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.codes import Codes, CodesMeta, check_shape, load_codes, mismatch_error, pair_header, read_sidecar, \
    save_codes, write_sidecar
from rvqtool.io.hashing import file_sha256

ROW_BYTES = 1 << 20     # bytes of one row gathered before they are written
CHECK_BYTES = 1 << 20   # bytes read at a time to check a file's code indices


class CodeSpool:
    """Windows of codes [channels, n_q, frames], appended in frame order, kept in an unnamed
    temporary file (gone with the process, even after kill -9) in `dtype`."""

    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self._file = tempfile.TemporaryFile(prefix="rvq-codes-")
        self._pieces: list[tuple[int, int]] = []   # (byte offset, frames) of each window
        self._end = 0
        self.rows = 0

    def append(self, piece: np.ndarray) -> None:
        channels, n_q, frames = piece.shape
        if self.rows and channels * n_q != self.rows:
            raise ValueError(f"a window of {channels}x{n_q} rows after windows of {self.rows}")
        self.rows = channels * n_q
        data = np.ascontiguousarray(piece, dtype=self.dtype).tobytes()
        os.pwrite(self._file.fileno(), data, self._end)
        self._pieces.append((self._end, frames))
        self._end += len(data)

    @property
    def frames(self) -> int:
        return sum(frames for _, frames in self._pieces)

    def row_chunks(self, row: int) -> Iterator[bytes]:
        """One row's codes, in frame order, in pieces of about ROW_BYTES."""
        size, parts, held = self.dtype.itemsize, [], 0
        for offset, frames in self._pieces:
            parts.append(os.pread(self._file.fileno(), frames * size, offset + row * frames * size))
            held += frames * size
            if held >= ROW_BYTES:
                yield b"".join(parts)
                parts, held = [], 0
        if parts:
            yield b"".join(parts)

    def array(self, channels: int) -> np.ndarray:
        """All codes as one compact array [channels, n_q, T] (for the packed formats)."""
        out = np.empty((self.rows, self.frames), self.dtype)
        for row in range(self.rows):
            out[row] = np.frombuffer(b"".join(self.row_chunks(row)), self.dtype)
        return out.reshape(channels, self.rows // channels, -1)

    def close(self) -> None:
        self._file.close()


def save_spooled(spool: CodeSpool, meta: CodesMeta, path: str | Path) -> None:
    """Write spooled codes as `save_codes` would write them (the same bytes): a `.npy` pair row
    by row from the spool, hashed as it is written; `.rvq` and '-' from a compact array."""
    if str(path) == "-" or Path(path).suffix != ".npy":
        save_codes(Codes(spool.array(meta.channels), meta), path)
        return
    path = Path(path)
    shape = (spool.rows, spool.frames) if meta.channels == 1 else (meta.channels, meta.n_q, spool.frames)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(spool.dtype),
                                                  "fortran_order": False, "shape": shape})
    try:
        with atomic_path(path) as tmp:
            digest = hashlib.sha256(header.getvalue())
            with open(tmp, "wb") as f:
                f.write(header.getvalue())
                for row in range(spool.rows):
                    for chunk in spool.row_chunks(row):
                        f.write(chunk)
                        digest.update(chunk)
            write_sidecar(path, meta, digest.hexdigest(), shape, spool.dtype)   # before the .npy's rename
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")


class NpyCodes:
    """The codes of a `.npy` pair, checked as `load_codes` checks them (metadata, header, shape,
    index range, content hash, in that order) by reading the file in pieces, then read a window at
    a time from the file held open, never whole."""

    def __init__(self, path: Path, meta: CodesMeta, facts: dict | None, file, shape: tuple[int, int, int],
                 dtype: np.dtype):
        self.path, self.meta, self.shape, self.dtype = path, meta, shape, dtype
        self._file, self._offset = file, file.tell()
        self._check(facts)

    @property
    def frames(self) -> int:
        return self.shape[-1]

    def window(self, start: int, stop: int, levels: int) -> np.ndarray:
        """Codes [channels, levels, stop - start] of frames start..stop, as int64."""
        channels, n_q, frames = self.shape
        size, n = self.dtype.itemsize, stop - start
        rows = [os.pread(self._file.fileno(), n * size, self._offset + ((c * n_q + q) * frames + start) * size)
                for c in range(channels) for q in range(levels)]
        return np.frombuffer(b"".join(rows), self.dtype).astype(np.int64).reshape(channels, levels, n)

    def _check(self, facts: dict | None) -> None:
        name = str(self.path)
        check_shape(self.meta, self.shape, name)
        limit = self.meta.codebook_size
        step = max(1, CHECK_BYTES // self.dtype.itemsize)
        total = self.shape[0] * self.shape[1] * self.shape[2]
        for start in range(0, total, step):
            n = min(step, total - start)
            data = os.pread(self._file.fileno(), n * self.dtype.itemsize, self._offset + start * self.dtype.itemsize)
            part = np.frombuffer(data, self.dtype)
            if part.min() < 0 or part.max() >= limit:
                raise UserError(f"{name}: code indices outside [0, {limit})")
        if facts is not None and file_sha256(self._file) != facts["sha256"]:
            raise mismatch_error(self.path)

    def close(self) -> None:
        self._file.close()

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


def open_codes(path: str | Path) -> "Codes | NpyCodes":
    """Codes to decode: a C-ordered `.npy` pair is read window by window from the file (flat
    memory whatever its length); `.rvq`, stdin and other `.npy` layouts are loaded whole."""
    name = str(path)
    if name == "-":
        return load_codes(path)
    path = Path(path)
    try:
        with path.open("rb") as f:
            is_npy = f.read(6) == b"\x93NUMPY"
    except OSError:
        is_npy = False
    if not is_npy:
        return load_codes(path)            # which says what is wrong with it
    meta, facts = read_sidecar(path)
    try:
        file = path.open("rb")
    except OSError as exc:
        raise UserError(f"{name}: cannot read ({exc.strerror or exc})")
    try:
        shape, dtype, fortran = pair_header(file, os.fstat(file.fileno()).st_size, name, path, facts)
        if fortran:                        # rows are not contiguous: rare, loaded whole
            file.close()
            return load_codes(path)
        return NpyCodes(path, meta, facts, file, shape if len(shape) == 3 else (1, *shape), dtype)
    except BaseException:
        file.close()
        raise
