"""Shard writers: one shard's documents, in order, into the files an LM trainer reads.

* `bin`: `NAME.bin`, every document's tokens back to back (uint16 when the vocabulary fits,
  else uint32; a preset's own dtype; little-endian), read with `np.memmap`, plus the document boundaries: `NAME.idx.npy`
  (int64 [documents + 1] token offsets), or with `index="megatron"` Megatron's `NAME.idx`
  (MMIDIDX v1; Megatron has no uint32, so a large vocabulary is stored as int32 there).
* `parquet`: `NAME.parquet`, a row per file: id, tokens, n_frames, length, duration, text, metadata (JSON)
  (and, with a preset, its layout facts: `layout`, JSON).
* `jsonl`: `NAME.jsonl`, the same fields, one JSON object a line.
* `wds`: `NAME.tar`, webdataset: `KEY.npy` (the tokens) and `KEY.json` (the other fields) per file,
  KEY = shard and position (`00003-000012`); tar headers carry no time or owner.

Everything is written under a temporary name and renamed on `finish`, so a shard file that exists
is whole; the caller then writes the shard's record, which marks it done. Temporaries are named
and locked as `rvqtool.io.atomic` names them (`.NAME.PID-RANDOM.part.SUFFIX`, `flock`-ed while
the writer lives, for the whole shard here), so two writers of one shard (overlapping parts of a
split job, a requeued part) never touch each other's files, and `atomic.remove_abandoned` deletes
only what a dead writer left.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import tarfile
from pathlib import Path

import numpy as np

from rvqtool.errors import UserError
from rvqtool.io.atomic import temporary_name
from rvqtool.io.hashing import file_digest
from rvqtool.tokens.vocab import PresetVocab, Vocab

FORMATS = ("bin", "parquet", "jsonl", "wds")
INDEXES = ("npy", "megatron")
MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_DTYPES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
PARQUET_ROW_GROUP = 1024


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def create_temporary(out_dir: Path, final: str) -> tuple[Path, int]:
    """A new temporary for `final` and a descriptor holding its `flock` until the writer closes it."""
    while True:
        path = out_dir / temporary_name(out_dir / final)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return path, fd
        except FileNotFoundError:
            pass
        os.close(fd)   # taken for abandoned between the open and the lock: start again under a new name


# characters JSON leaves as they are that str.splitlines() (and other readers) take for line ends
LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_line(value) -> str:
    """`value` as one line of JSON (non-ASCII kept as UTF-8) whatever its strings hold."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in LINE_BREAKS.items():
        text = text.replace(char, escaped)
    return text + "\n"


ROW = ("id", "n_frames", "length", "duration", "text", "metadata")


def row(doc: dict) -> dict:
    """The fields stored beside the tokens (all but where the file came from; with a preset, its
    layout facts too)."""
    return {k: doc[k] for k in ROW + (("layout",) if "layout" in doc else ())}


class ShardWriter:
    """add(doc, tokens) for each document in order, then finish() -> {file name: {bytes, sha256}}."""

    def __init__(self, out_dir: Path, index: int, vocab: Vocab | PresetVocab):
        self.out_dir, self.index, self.vocab = out_dir, index, vocab
        self.name = shard_name(index)
        self.count = 0
        self._temps: dict[str, tuple[Path, int]] = {}   # final name -> (temporary, its locked descriptor)

    def _temp(self, final: str) -> Path:
        path, fd = create_temporary(self.out_dir, final)
        self._temps[final] = (path, fd)
        return path

    def add(self, doc: dict, tokens: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def finish(self) -> dict:
        self._close()
        for _, fd in self._temps.values():
            os.fsync(fd)
        files = {}
        for final, (path, fd) in list(self._temps.items()):
            os.fchmod(fd, 0o644)
            os.replace(path, self.out_dir / final)
            del self._temps[final]
            os.close(fd)
            files[final] = file_digest(self.out_dir / final)
        return files

    def abort(self) -> None:
        try:
            self._close()
        finally:
            for path, fd in self._temps.values():
                path.unlink(missing_ok=True)
                os.close(fd)
            self._temps = {}


class BinWriter(ShardWriter):
    def __init__(self, out_dir: Path, index: int, vocab: Vocab | PresetVocab, index_kind: str = "npy"):
        super().__init__(out_dir, index, vocab)
        self.index_kind = index_kind
        self.dtype = vocab.dtype
        if index_kind == "megatron" and self.dtype == np.uint32:
            self.dtype = np.dtype(np.int32)
        self.offsets = [0]
        self._file = open(self._temp(self.name + ".bin"), "wb")

    def add(self, doc: dict, tokens: np.ndarray) -> None:
        self._file.write(tokens.astype(self.dtype.newbyteorder("<")).tobytes())
        self.offsets.append(self.offsets[-1] + len(tokens))
        self.count += 1

    def _close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        offsets = np.array(self.offsets, dtype=np.int64)
        if self.index_kind == "npy":
            with open(self._temp(self.name + ".idx.npy"), "wb") as f:
                np.save(f, offsets)
        else:
            with open(self._temp(self.name + ".idx"), "wb") as f:
                f.write(megatron_index(offsets, self.dtype))


def megatron_index(offsets: np.ndarray, dtype: np.dtype) -> bytes:
    """Megatron-LM's MMapIndexedDataset index: one sequence per document."""
    count = len(offsets) - 1
    sizes = np.diff(offsets).astype("<i4")
    pointers = (offsets[:-1] * dtype.itemsize).astype("<i8")
    documents = np.arange(count + 1, dtype="<i8")
    header = MEGATRON_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", MEGATRON_DTYPES[dtype])
    return header + struct.pack("<Q", count) + struct.pack("<Q", count + 1) + \
        sizes.tobytes() + pointers.tobytes() + documents.tobytes()


def read_megatron_index(path: Path) -> tuple[np.dtype, np.ndarray]:
    """(dtype, token offsets [documents + 1]) from a Megatron `.idx` (the inverse of `megatron_index`)."""
    data = Path(path).read_bytes()
    if data[:9] != MEGATRON_MAGIC:
        raise UserError(f"{path}: not a Megatron index")
    code = data[17]
    dtype = next(d for d, c in MEGATRON_DTYPES.items() if c == code)
    (count,) = struct.unpack("<Q", data[18:26])
    sizes = np.frombuffer(data, "<i4", count, 34).astype(np.int64)
    return dtype, np.concatenate([[0], np.cumsum(sizes)])


class JsonlWriter(ShardWriter):
    def __init__(self, out_dir: Path, index: int, vocab: Vocab | PresetVocab):
        super().__init__(out_dir, index, vocab)
        self._file = open(self._temp(self.name + ".jsonl"), "w", encoding="utf-8")

    def add(self, doc: dict, tokens: np.ndarray) -> None:
        self._file.write(json_line({**row(doc), "tokens": tokens.tolist()}))
        self.count += 1

    def _close(self) -> None:
        self._file.close()


class ParquetWriter(ShardWriter):
    def __init__(self, out_dir: Path, index: int, vocab: Vocab | PresetVocab):
        super().__init__(out_dir, index, vocab)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError("--format parquet needs pyarrow: pip install pyarrow")
        self._pa = pa
        columns = [("id", pa.string()), ("tokens", pa.list_(pa.from_numpy_dtype(vocab.dtype))),
                   ("n_frames", pa.int64()), ("length", pa.int64()), ("duration", pa.float64()),
                   ("text", pa.string()), ("metadata", pa.string())]
        if isinstance(vocab, PresetVocab):
            columns.append(("layout", pa.string()))
        self.schema = pa.schema(columns)
        self._writer = pq.ParquetWriter(str(self._temp(self.name + ".parquet")), self.schema)
        self._rows: list[dict] = []

    def add(self, doc: dict, tokens: np.ndarray) -> None:
        fields = {**row(doc), "tokens": tokens, "metadata": json.dumps(doc["metadata"], sort_keys=True)}
        if "layout" in doc:
            fields["layout"] = json.dumps(doc["layout"], sort_keys=True)
        self._rows.append(fields)
        self.count += 1
        if len(self._rows) == PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            columns = {name: [r[name] for r in self._rows] for name in self.schema.names}
            self._writer.write_table(self._pa.table(columns, schema=self.schema))
            self._rows = []

    def _close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None


class WdsWriter(ShardWriter):
    def __init__(self, out_dir: Path, index: int, vocab: Vocab | PresetVocab):
        super().__init__(out_dir, index, vocab)
        self._tar = tarfile.open(self._temp(self.name + ".tar"), "w", format=tarfile.USTAR_FORMAT)

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = \
            len(data), 0, 0o644, 0, 0, "", ""
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, doc: dict, tokens: np.ndarray) -> None:
        key = f"{self.index:05d}-{self.count:06d}"
        buffer = io.BytesIO()
        np.save(buffer, tokens)
        self._member(key + ".npy", buffer.getvalue())
        self._member(key + ".json", json.dumps(row(doc), ensure_ascii=False, sort_keys=True).encode())
        self.count += 1

    def _close(self) -> None:
        if not self._tar.closed:
            self._tar.close()


def open_writer(fmt: str, out_dir: Path, index: int, vocab: Vocab | PresetVocab, index_kind: str = "npy") -> ShardWriter:
    if fmt == "bin":
        return BinWriter(out_dir, index, vocab, index_kind)
    return {"parquet": ParquetWriter, "jsonl": JsonlWriter, "wds": WdsWriter}[fmt](out_dir, index, vocab)


def data_files(fmt: str, index: int, index_kind: str = "npy") -> list[str]:
    """The files a finished shard consists of."""
    name = shard_name(index)
    if fmt == "bin":
        return [name + ".bin", name + (".idx.npy" if index_kind == "npy" else ".idx")]
    return [name + {"parquet": ".parquet", "jsonl": ".jsonl", "wds": ".tar"}[fmt]]
