"""Code files.

* `NAME.npy` — the codes as a plain integer array that numpy alone loads: [n_q, T] for one
  channel, [channels, n_q, T] for audio encoded per channel. Its metadata sits beside it in
  `NAME.npy.json`, with the SHA-256, shape and dtype of the very `.npy` written with it (key
  "npy"): two renames cannot replace a pair at once, so a reader proves the pair is one write's
  instead (a kill between them, or two writers, leave a pair that is refused and redone). Sidecars
  of older versions, without that key, are accepted as before.
* `NAME.rvq` — one self-contained packed file (what `-` streams): b"RVQ1", a little-endian uint32
  header length, a JSON header, then the codes as a little-endian bit stream of
  ceil(log2(codebook_size)) bits per code in [channels, n_q, T] order.

A multi-rate model's codes (SNAC: levels at 12/23/47 Hz) are rows at the coarse frame rate, in
the model's depth-first order (Orpheus's 7 rows per frame at 24 kHz): the array's n_q axis holds
the rows, and the metadata's `levels` says how many levels made them (`rvq --n-q` counts levels).
Both that key and `frame_multiple` are left out of files of other models, which stay byte-identical.
So is `output_sample_rate`, written only for a model that decodes to another rate than it encodes
(NeuCodec: 16 kHz codes, 24 kHz audio).

Every size a header claims is compared with the bytes really there (in Python ints) before anything
is allocated, and codes are packed and unpacked in chunks, so memory follows the file's real size.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import sys
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from rvqtool.config import bits_per_code
from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.hashing import file_sha256
from rvqtool.windowing import segment_frames, segments

MAGIC = b"RVQ1"
FORMAT = "rvqtool-codes"
VERSION = 1
NPY_FACTS = "npy"          # the sidecar's record of its .npy: sha256 (of the whole file), shape, dtype
CHUNK_CODES = 1 << 18      # codes packed or unpacked at a time (a multiple of 8: chunks end on whole bytes)
MAX_CODEBOOK_SIZE = 2 ** 31


@dataclass(frozen=True)
class CodesMeta:
    """What decoding needs besides the integers, and what proves which model made them."""

    model: str
    model_sha256: str
    sample_rate: int
    frame_rate: float
    hop_length: int
    n_q: int
    codebook_size: int
    length: int               # samples at sample_rate before padding to whole frames
    channels: int
    channel_mode: str         # "mono": downmixed; "split": each channel encoded on its own
    source_sample_rate: int
    model_path: str = ""      # where the model was loaded from; a hint for decoding without --model
    # models that encode in overlapping segments, each normalised (EnCodec 48 kHz): the segment
    # length and stride in samples, and each segment's scale; absent (0/None) for everything else
    segment_length: int = 0
    segment_stride: int = 0
    scales: list | None = None
    # models whose levels run at different rates (SNAC): codes are rows at the coarse frame rate,
    # `n_q` of them (what the array holds), made by `levels` levels (0: one row per level, n_q
    # levels); and the frames are a multiple of `frame_multiple` (the input padded to whole units)
    levels: int = 0
    frame_multiple: int = 1
    # a model whose decoder makes audio at another rate than it encodes (NeuCodec: 24 kHz from
    # 16 kHz): that rate; 0 for the same rate
    output_sample_rate: int = 0

    @property
    def decoded_sample_rate(self) -> int:
        """The rate of the audio these codes decode to."""
        return self.output_sample_rate or self.sample_rate

    @property
    def decoded_length(self) -> int:
        """Samples of the decoded audio: `length` at the decoded rate (rounded up)."""
        return -(-self.length * self.decoded_sample_rate // self.sample_rate)

    @property
    def level_count(self) -> int:
        """Levels of the codec that made these codes (`n_q` counts rows, which may be more)."""
        return self.levels or self.n_q

    @property
    def bits_per_code(self) -> int:
        return bits_per_code(self.codebook_size)

    def bitrate_kbps(self) -> float:
        return self.frame_rate * self.n_q * self.bits_per_code * self.channels / 1000.0

    def segments(self) -> list[tuple[int, int]]:
        """(start, stop) samples of each encoded segment: one for unsegmented codes."""
        return segments(self.length, self.segment_length, self.segment_stride)

    def to_dict(self) -> dict:
        fields = asdict(self)
        if not self.segment_length:  # files without segments keep the original layout
            for name in ("segment_length", "segment_stride", "scales"):
                del fields[name]
        if not self.levels:          # nor do files of one row per level
            del fields["levels"]
        if self.frame_multiple == 1:
            del fields["frame_multiple"]
        if not self.output_sample_rate:
            del fields["output_sample_rate"]
        return {"format": FORMAT, "version": VERSION, **fields}

    @classmethod
    def from_dict(cls, data: dict, name: str) -> "CodesMeta":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{name}: not an rvqtool code file (no '{FORMAT}' metadata)")
        if data.get("version") != VERSION:
            raise UserError(f"{name}: code file version {data.get('version')} is not supported (expected {VERSION})")
        fields = {k: v for k, v in data.items() if k not in ("format", "version")}
        try:
            meta = cls(**fields)
        except TypeError as exc:
            raise UserError(f"{name}: malformed code metadata ({exc})")
        for field in dataclass_fields(cls):  # JSON can say anything: null, "8", true
            value = getattr(meta, field.name)
            if isinstance(value, bool) or not isinstance(value, _JSON_TYPES[field.type]):
                raise UserError(f"{name}: malformed code metadata ({field.name} is {value!r})")
        if not 1 <= meta.codebook_size <= MAX_CODEBOOK_SIZE:
            raise UserError(f"{name}: codebook size {meta.codebook_size} is outside [1, {MAX_CODEBOOK_SIZE}]")
        return meta


_JSON_TYPES = {"str": str, "int": int, "float": (int, float), "list | None": (list, type(None))}


@dataclass
class Codes:
    """codes: int array [channels, n_q, T]; always 3-D in memory, squeezed to 2-D on disk for mono."""

    codes: np.ndarray
    meta: CodesMeta

    @property
    def frames(self) -> int:
        return self.codes.shape[-1]

    def validate(self, name: str) -> None:
        check_shape(self.meta, self.codes.shape, name)
        if self.codes.size and (self.codes.min() < 0 or self.codes.max() >= self.meta.codebook_size):
            raise UserError(f"{name}: code indices outside [0, {self.meta.codebook_size})")


def check_shape(meta: CodesMeta, shape: tuple[int, ...], name: str) -> None:
    """Refuse a shape [channels, n_q, T] that the metadata does not describe; what a header alone
    can prove, so that nothing is read or allocated for a file that claims the impossible."""
    c, n_q, frames = shape
    if meta.length < 1 or meta.n_q < 1 or meta.sample_rate < 1 or meta.hop_length < 1:
        raise UserError(f"{name}: metadata must give a positive length, n_q, sample rate and hop length")
    if c != meta.channels or n_q != meta.n_q:
        raise UserError(f"{name}: array shape {tuple(shape)} disagrees with its metadata "
                        f"(channels={meta.channels}, n_q={meta.n_q})")
    if not 0 <= meta.levels <= meta.n_q or meta.frame_multiple < 1:
        raise UserError(f"{name}: metadata must give levels in [0, n_q] and a positive frame multiple")
    if meta.output_sample_rate < 0 or meta.hop_length * meta.decoded_sample_rate % meta.sample_rate:
        raise UserError(f"{name}: metadata must give an output sample rate of whole samples per frame")
    if meta.segment_length and (meta.segment_stride < 1 or meta.scales is None  # counted before listed
                                or len(meta.scales) != -(-meta.length // meta.segment_stride)):
        raise UserError(f"{name}: segmented codes need a positive stride and one scale per segment")
    expected = segment_frames(meta.segments(), meta.hop_length)
    expected = -(-expected // meta.frame_multiple) * meta.frame_multiple
    if frames != expected:
        raise UserError(f"{name}: {frames} frames, but the metadata's length needs {expected}")


def code_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.int16) if codebook_size <= 2 ** 15 else np.dtype(np.int32)


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_codes(codes: Codes, path: str | Path) -> None:
    """Write `.npy` (+ `.npy.json`) or `.rvq` by suffix; '-' streams the packed format to stdout."""
    if str(path) == "-":
        for part in pack_parts(codes):
            sys.stdout.buffer.write(part)
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    try:
        if path.suffix == ".rvq":
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                for part in pack_parts(codes):
                    f.write(part)
        elif path.suffix == ".npy":
            array = codes.codes.astype(code_dtype(codes.meta.codebook_size))
            array = array[0] if codes.meta.channels == 1 else array
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = buffer.getvalue()
            write_sidecar(path, codes.meta, hashlib.sha256(data).hexdigest(), array.shape, array.dtype)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        else:
            raise UserError(f"{path}: code files end in .npy or .rvq")
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")


def load_codes(path: str | Path) -> Codes:
    """Read a `.npy` (with its sidecar) or `.rvq` file, or packed codes from stdin ('-')."""
    name = str(path)
    if name == "-":
        codes = unpack(sys.stdin.buffer.read(), "<stdin>")
    elif _kind(Path(path)) == "rvq":
        codes = unpack(_read(Path(path)), name)
    else:
        return _load_npy(Path(path))
    codes.validate(name)
    return codes


def read_header(path: str | Path) -> tuple[CodesMeta, tuple[int, int, int]]:
    """(metadata, shape [channels, n_q, T]) of a code file, checked against each other and against
    the bytes really there, without reading the codes ('-': packed codes on stdin). A `.npy`'s
    content hash is left to `load_codes`, which reads the codes anyway."""
    name = str(path)
    if name == "-":
        data = sys.stdin.buffer.read()
        meta, shape = _rvq_header(io.BytesIO(data), len(data), "<stdin>")
    elif _kind(Path(path)) == "rvq":
        try:
            with open(path, "rb") as f:
                meta, shape = _rvq_header(f, os.fstat(f.fileno()).st_size, name)
        except OSError as exc:
            raise UserError(f"{name}: cannot read ({exc.strerror or exc})")
    else:
        path = Path(path)
        meta, facts = read_sidecar(path)
        try:
            with open(path, "rb") as f:
                shape, _, _ = pair_header(f, os.fstat(f.fileno()).st_size, name, path, facts)
        except OSError as exc:
            raise UserError(f"{name}: cannot read ({exc.strerror or exc})")
        shape = shape if len(shape) == 3 else (1, *shape)
    check_shape(meta, shape, name)
    return meta, shape


def is_complete(path: str | Path) -> bool:
    """Whether a code file by this name is one whole write, which a batch re-run skips: a `.npy`
    whose sidecar is missing, unreadable or records another array (a write cut between the two
    renames, two writers) is not, and is redone. A legacy sidecar (no record) counts as before."""
    path = Path(path)
    if path.suffix != ".npy":
        return path.exists()
    try:
        _, facts = read_sidecar(path)
        if facts is None:
            return path.exists()
        return file_sha256(path) == facts["sha256"]
    except (UserError, OSError):
        return False


def _kind(path: Path) -> str:
    """"rvq" or "npy" by the file's first bytes (never by its name)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})")
    if head[:4] == MAGIC:
        return "rvq"
    if head == b"\x93NUMPY":
        return "npy"
    raise UserError(f"{path}: not a code file (expected .npy with a .npy.json beside it, or .rvq)")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})")


def mismatch_error(path: Path) -> UserError:
    return UserError(f"{path} does not match its metadata {sidecar(path).name} (interrupted write?): re-encode it")


def write_sidecar(path: Path, meta: CodesMeta, sha256: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Put `NAME.npy.json` in place: the metadata, and its record of the `.npy` written with it
    (renamed before the `.npy` itself, so that a kill between the two leaves a pair readers refuse)."""
    facts = {"sha256": sha256, "shape": list(shape), "dtype": np.dtype(dtype).str}
    with atomic_path(sidecar(path)) as tmp:
        tmp.write_text(json.dumps({**meta.to_dict(), NPY_FACTS: facts}, indent=2) + "\n")


def read_sidecar(path: Path) -> tuple[CodesMeta, dict | None]:
    """The metadata beside a `.npy`, and its record of the array it was written with (None: legacy)."""
    meta_path = sidecar(path)
    try:
        data = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: its metadata {meta_path.name} is missing (keep the .npy.json beside the .npy)")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path}: not valid JSON ({exc})")
    except OSError as exc:
        raise UserError(f"{meta_path}: cannot read ({exc.strerror or exc})")
    facts = data.pop(NPY_FACTS, None) if isinstance(data, dict) else None
    meta = CodesMeta.from_dict(data, str(meta_path))
    if facts is not None and not (isinstance(facts, dict) and isinstance(facts.get("sha256"), str)
                                  and isinstance(facts.get("shape"), list) and isinstance(facts.get("dtype"), str)):
        raise UserError(f"{meta_path}: malformed code metadata ({NPY_FACTS} is {facts!r})")
    return meta, facts


def npy_header(f: BinaryIO, size: int, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, Fortran order) from a `.npy` header, refused unless the file holds exactly
    the integer array it claims; `f` is left at the data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, TypeError, SyntaxError) as exc:
        raise UserError(f"{name}: corrupt .npy ({exc})")
    if not np.issubdtype(dtype, np.integer):
        raise UserError(f"{name}: codes must be integers, found {dtype}")
    if len(shape) not in (2, 3):
        raise UserError(f"{name}: codes must be [n_q, T] or [channels, n_q, T], found shape {shape}")
    claimed, held = math.prod(shape) * dtype.itemsize, size - f.tell()
    if claimed != held:
        raise UserError(f"{name}: corrupt .npy (its header claims {claimed} bytes of codes, the file holds {held})")
    return shape, dtype, fortran


def pair_header(f: BinaryIO, size: int, name: str, path: Path, facts: dict | None) -> tuple[tuple[int, ...], np.dtype, bool]:
    """`npy_header` of a pair's `.npy`, refused unless it is the array its sidecar's record (`facts`,
    None for a legacy sidecar) describes."""
    shape, dtype, fortran = npy_header(f, size, name)
    if facts is not None and (list(shape) != facts["shape"] or dtype.str != facts["dtype"]):
        raise mismatch_error(path)
    return shape, dtype, fortran


def _load_npy(path: Path) -> Codes:
    """Checks in the order that names the most specific fault: the metadata, the array's own
    header, the array against the metadata, and last the pair's content hash."""
    meta, facts = read_sidecar(path)
    data = _read(path)
    f = io.BytesIO(data)
    shape, dtype, fortran = pair_header(f, len(data), str(path), path, facts)
    array = np.frombuffer(data, dtype, offset=f.tell()).reshape(shape, order="F" if fortran else "C")
    codes = Codes(array.astype(np.int64).reshape((1, *shape) if len(shape) == 2 else shape), meta)
    codes.validate(str(path))
    if facts is not None and hashlib.sha256(data).hexdigest() != facts["sha256"]:
        raise mismatch_error(path)
    return codes


def _header_bytes(meta: CodesMeta, shape: tuple[int, ...]) -> bytes:
    header = json.dumps({**meta.to_dict(), "shape": [int(s) for s in shape]}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header


def packed_size(meta: CodesMeta, shape: tuple[int, ...]) -> int:
    """Bytes of the `.rvq` form of codes of this shape, without packing them."""
    return len(_header_bytes(meta, shape)) + -(-math.prod(shape) * meta.bits_per_code // 8)


def pack_parts(codes: Codes) -> Iterator[bytes]:
    """The `.rvq` bytes in pieces: the header, then the payload CHUNK_CODES codes at a time, a byte
    per bit while they are packed (a whole file's bit planes at once took 40 bytes a code)."""
    yield _header_bytes(codes.meta, codes.codes.shape)
    bits = codes.meta.bits_per_code
    flat = codes.codes.reshape(-1)
    for start in range(0, flat.size, CHUNK_CODES):
        part = flat[start:start + CHUNK_CODES].astype(np.uint32)
        bit_planes = np.empty((len(part), bits), dtype=np.uint8)
        for bit in range(bits):
            bit_planes[:, bit] = (part >> bit) & 1
        yield np.packbits(bit_planes.ravel(), bitorder="little").tobytes()


def pack(codes: Codes) -> bytes:
    return b"".join(pack_parts(codes))


def _rvq_header(f: BinaryIO, size: int, name: str) -> tuple[CodesMeta, tuple[int, int, int]]:
    """Metadata and shape of a `.rvq` of `size` bytes, refused unless the file holds exactly the
    header and payload they claim; `f` is left at the payload."""
    head = f.read(8)
    if head[:4] != MAGIC or len(head) < 8:
        raise UserError(f"{name}: not a packed rvqtool code file")
    (length,) = struct.unpack("<I", head[4:8])
    if length > size - 8:
        raise UserError(f"{name}: corrupt header (it claims {length} bytes, the file holds {size - 8})")
    try:
        header = json.loads(f.read(length))
        shape = tuple(int(s) for s in header.pop("shape"))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{name}: corrupt header ({exc})")
    meta = CodesMeta.from_dict(header, name)
    if len(shape) != 3 or min(shape) < 0 \
            or size - 8 - length != -(-math.prod(shape) * meta.bits_per_code // 8):
        raise UserError(f"{name}: truncated or corrupt code payload")
    return meta, shape


def unpack(data: bytes, name: str) -> Codes:
    f = io.BytesIO(data)
    meta, shape = _rvq_header(f, len(data), name)
    check_shape(meta, shape, name)  # before the codes are allocated
    payload = np.frombuffer(data, dtype=np.uint8, offset=f.tell())
    count, bits = math.prod(shape), meta.bits_per_code
    values = np.zeros(count, dtype=np.int64)
    for start in range(0, count, CHUNK_CODES):
        n = min(CHUNK_CODES, count - start)
        chunk = payload[start * bits // 8: -(-(start + n) * bits // 8)]
        bit_planes = np.unpackbits(chunk, bitorder="little", count=n * bits).reshape(n, bits)
        part = values[start:start + n]
        for bit in range(bits):
            part |= bit_planes[:, bit].astype(np.int64) << bit
    return Codes(values.reshape(shape), meta)
