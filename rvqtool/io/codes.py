"""Code files.

* `NAME.npy` — the codes as a plain integer array that numpy alone loads: [n_q, T] for one
  channel, [channels, n_q, T] for audio encoded per channel. Its metadata sits beside it in
  `NAME.npy.json`; the JSON is written first and the array last, so a `.npy` that exists is complete.
* `NAME.rvq` — one self-contained packed file (what `-` streams): b"RVQ1", a little-endian uint32
  header length, a JSON header, then the codes as a little-endian bit stream of
  ceil(log2(codebook_size)) bits per code in [channels, n_q, T] order.
"""
from __future__ import annotations

import json
import struct
import sys
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path

MAGIC = b"RVQ1"
FORMAT = "rvqtool-codes"
VERSION = 1


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

    @property
    def bits_per_code(self) -> int:
        return max(1, int(np.ceil(np.log2(self.codebook_size))))

    def bitrate_kbps(self) -> float:
        return self.frame_rate * self.n_q * self.bits_per_code * self.channels / 1000.0

    def segments(self) -> list[tuple[int, int]]:
        """(start, stop) samples of each encoded segment: one for unsegmented codes."""
        if not self.segment_length:
            return [(0, self.length)]
        return [(start, min(start + self.segment_length, self.length))
                for start in range(0, self.length, self.segment_stride)]

    def to_dict(self) -> dict:
        fields = asdict(self)
        if not self.segment_length:  # files without segments keep the original layout
            for name in ("segment_length", "segment_stride", "scales"):
                del fields[name]
        return {"format": FORMAT, "version": VERSION, **fields}

    @classmethod
    def from_dict(cls, data: dict, name: str) -> "CodesMeta":
        if data.get("format") != FORMAT:
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
        c, n_q, _ = self.codes.shape
        if self.meta.length < 1 or self.meta.n_q < 1 or self.meta.sample_rate < 1 or self.meta.hop_length < 1:
            raise UserError(f"{name}: metadata must give a positive length, n_q, sample rate and hop length")
        if c != self.meta.channels or n_q != self.meta.n_q:
            raise UserError(f"{name}: array shape {self.codes.shape} disagrees with its metadata "
                            f"(channels={self.meta.channels}, n_q={self.meta.n_q})")
        if self.codes.size and (self.codes.min() < 0 or self.codes.max() >= self.meta.codebook_size):
            raise UserError(f"{name}: code indices outside [0, {self.meta.codebook_size})")
        if self.meta.segment_length and (self.meta.segment_stride < 1 or self.meta.scales is None
                                         or len(self.meta.scales) != len(self.meta.segments())):
            raise UserError(f"{name}: segmented codes need a positive stride and one scale per segment")
        expected = sum(-(-(stop - start) // self.meta.hop_length) for start, stop in self.meta.segments())
        if self.frames != expected:
            raise UserError(f"{name}: {self.frames} frames, but the metadata's length needs {expected}")


def code_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.int16) if codebook_size <= 2 ** 15 else np.dtype(np.int32)


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_codes(codes: Codes, path: str | Path) -> None:
    """Write `.npy` (+ `.npy.json`) or `.rvq` by suffix; '-' streams the packed format to stdout."""
    if str(path) == "-":
        sys.stdout.buffer.write(pack(codes))
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    try:
        if path.suffix == ".rvq":
            with atomic_path(path) as tmp:
                tmp.write_bytes(pack(codes))
        elif path.suffix == ".npy":
            array = codes.codes.astype(code_dtype(codes.meta.codebook_size))
            with atomic_path(sidecar(path)) as tmp:
                tmp.write_text(json.dumps(codes.meta.to_dict(), indent=2) + "\n")
            with atomic_path(path) as tmp:
                np.save(tmp, array[0] if codes.meta.channels == 1 else array)
        else:
            raise UserError(f"{path}: code files end in .npy or .rvq")
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")


def load_codes(path: str | Path) -> Codes:
    """Read a `.npy` (with its sidecar) or `.rvq` file, or packed codes from stdin ('-')."""
    name = str(path)
    if name == "-":
        codes = unpack(sys.stdin.buffer.read(), "<stdin>")
    else:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{name}: no such file")
        try:
            with path.open("rb") as f:
                head = f.read(6)
        except OSError as exc:
            raise UserError(f"{name}: cannot read ({exc.strerror or exc})")
        if head[:4] == MAGIC:
            codes = unpack(path.read_bytes(), name)
        elif head == b"\x93NUMPY":
            codes = _load_npy(path)
        else:
            raise UserError(f"{name}: not a code file (expected .npy with a .npy.json beside it, or .rvq)")
    codes.validate(name)
    return codes


def _load_npy(path: Path) -> Codes:
    meta_path = sidecar(path)
    try:
        meta = CodesMeta.from_dict(json.loads(meta_path.read_text()), str(meta_path))
    except FileNotFoundError:
        raise UserError(f"{path}: its metadata {meta_path.name} is missing (keep the .npy.json beside the .npy)")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path}: not valid JSON ({exc})")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: corrupt .npy ({exc})")
    if not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{path}: codes must be integers, found {array.dtype}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise UserError(f"{path}: codes must be [n_q, T] or [channels, n_q, T], found shape {array.shape}")
    return Codes(array.astype(np.int64), meta)


def pack(codes: Codes) -> bytes:
    bits = codes.meta.bits_per_code
    flat = codes.codes.astype(np.uint32).ravel()
    bit_planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    payload = np.packbits(bit_planes.ravel(), bitorder="little").tobytes()
    header = json.dumps({**codes.meta.to_dict(), "shape": list(codes.codes.shape)}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + payload


def unpack(data: bytes, name: str) -> Codes:
    if data[:4] != MAGIC or len(data) < 8:
        raise UserError(f"{name}: not a packed rvqtool code file")
    (size,) = struct.unpack("<I", data[4:8])
    try:
        header = json.loads(data[8:8 + size])
        shape = tuple(int(s) for s in header.pop("shape"))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{name}: corrupt header ({exc})")
    meta = CodesMeta.from_dict(header, name)
    count, bits = int(np.prod(shape)), meta.bits_per_code
    payload = np.frombuffer(data, dtype=np.uint8, offset=8 + size)
    if len(payload) != -(-count * bits // 8) or len(shape) != 3:
        raise UserError(f"{name}: truncated or corrupt code payload")
    bit_planes = np.unpackbits(payload, bitorder="little", count=count * bits).reshape(count, bits)
    values = (bit_planes.astype(np.int64) << np.arange(bits)).sum(axis=1)
    return Codes(values.reshape(shape), meta)
