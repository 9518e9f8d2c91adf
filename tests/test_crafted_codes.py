"""Crafted code files (headers that claim 10^12 frames, 10^6 levels, a 4 GiB header, a shape whose
product overflows int64, an .npy of 16 TB): refused in one line, at once, allocating nothing like
what they claim; and long legitimate files packed, unpacked and described in bounded memory, the
packed bytes those of the whole-array packer the format was defined by."""
from __future__ import annotations

import json
import struct
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rvqtool.describe import describe
from rvqtool.errors import UserError
from rvqtool.io import codes as codes_io
from rvqtool.io.codes import Codes, CodesMeta, load_codes, pack, save_codes, unpack

HOP = 320
META = CodesMeta(model="crafted", model_sha256="0" * 64, sample_rate=24000, frame_rate=75.0, hop_length=HOP,
                 n_q=8, codebook_size=1024, length=10 * HOP, channels=1, channel_mode="mono",
                 source_sample_rate=24000)


def codes_of(frames: int, seed: int = 0, meta: CodesMeta = META) -> Codes:
    rng = np.random.default_rng(seed)
    meta = replace(meta, length=frames * meta.hop_length)
    return Codes(rng.integers(0, meta.codebook_size, (meta.channels, meta.n_q, frames)), meta)


def rvq_bytes(header: dict, payload: bytes = b"", length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return codes_io.MAGIC + struct.pack("<I", len(text) if length is None else length) + text + payload


def huge_frames(d: Path) -> Path:
    save_codes(codes_of(10), d / "x.npy")
    meta = json.loads((d / "x.npy.json").read_text())
    (d / "x.npy.json").write_text(json.dumps({**meta, "length": 10 ** 12 * HOP}))
    return d / "x.npy"


def huge_levels(d: Path) -> Path:
    save_codes(codes_of(10), d / "x.npy")
    meta = json.loads((d / "x.npy.json").read_text())
    (d / "x.npy.json").write_text(json.dumps({**meta, "n_q": 10 ** 6}))
    return d / "x.npy"


def huge_segment_count(d: Path) -> Path:
    """Segmented codes (EnCodec 48 kHz) with a stride of one sample over 10^12 samples."""
    save_codes(codes_of(10), d / "x.npy")
    meta = json.loads((d / "x.npy.json").read_text())
    (d / "x.npy.json").write_text(json.dumps({**meta, "length": 10 ** 12, "segment_length": 1,
                                              "segment_stride": 1, "scales": [1.0]}))
    return d / "x.npy"


def huge_npy_shape(d: Path) -> Path:
    save_codes(codes_of(10), d / "x.npy")
    with open(d / "x.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<i2", "fortran_order": False, "shape": (8, 10 ** 12)})
        f.write(b"\0" * 160)
    return d / "x.npy"


def rvq_header_length(d: Path) -> Path:
    (d / "x.rvq").write_bytes(rvq_bytes({**META.to_dict(), "shape": [1, 8, 10]}, b"\0" * 100, 2 ** 32 - 1))
    return d / "x.rvq"


def rvq_overflowing_shape(d: Path) -> Path:
    """np.prod([2^32, 2^32, 1]) is 0 in int64: the payload 'fits' an empty one."""
    (d / "x.rvq").write_bytes(rvq_bytes({**META.to_dict(), "shape": [2 ** 32, 2 ** 32, 1]}))
    return d / "x.rvq"


def rvq_huge_frames(d: Path) -> Path:
    meta = {**META.to_dict(), "length": 10 ** 12 * HOP, "shape": [1, 8, 10 ** 12]}
    (d / "x.rvq").write_bytes(rvq_bytes(meta, b"\0" * 100))
    return d / "x.rvq"


def rvq_huge_codebook(d: Path) -> Path:
    meta = {**META.to_dict(), "codebook_size": 10 ** 30, "shape": [1, 8, 10]}
    (d / "x.rvq").write_bytes(rvq_bytes(meta, b"\0" * 100))
    return d / "x.rvq"


CRAFTED = {
    "npy-sidecar-1e12-frames": (huge_frames, "frames, but the metadata's length needs"),
    "npy-sidecar-1e6-levels": (huge_levels, "disagrees with its metadata"),
    "npy-sidecar-1e12-segments": (huge_segment_count, "one scale per segment"),
    "npy-header-shape-8x1e12": (huge_npy_shape, "corrupt .npy (its header claims 16000000000000 bytes"),
    "rvq-header-length-2^32-1": (rvq_header_length, "corrupt header (it claims 4294967295 bytes"),
    "rvq-shape-2^32x2^32x1": (rvq_overflowing_shape, "truncated or corrupt code payload"),
    "rvq-shape-1e12-frames": (rvq_huge_frames, "truncated or corrupt code payload"),
    "rvq-codebook-1e30": (rvq_huge_codebook, "codebook size"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_code_files_are_refused_fast_in_bounded_memory(tmp_path, case):
    make, fragment = CRAFTED[case]
    path = make(tmp_path)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        for read in (load_codes, codes_io.read_header, describe):
            with pytest.raises(UserError, match="^" + str(path).replace(".", r"\.")) as refused:
                read(str(path))
            assert fragment in str(refused.value), (read.__name__, refused.value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 + 2 * path.stat().st_size, f"{case}: peak {peak} bytes"
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("case", ["npy-header-shape-8x1e12", "rvq-shape-2^32x2^32x1", "rvq-header-length-2^32-1"])
def test_crafted_code_files_get_one_line_from_the_cli(rvq, tmp_path, case):
    """What users saw: `unexpected MemoryError: Unable to allocate 14.6 TiB`, `unexpected ValueError`."""
    make, fragment = CRAFTED[case]
    path = make(tmp_path)
    for argv in (["info", path.name], ["decode", path.name, "-o", "out.wav"]):
        res = rvq(*argv, cwd=tmp_path)
        assert res.rc == 1 and len(res.err_lines) == 1, res
        assert res.err_lines[0].startswith(f"error: {path.name}") and fragment in res.stderr, res
    assert not (tmp_path / "out.wav").exists()


def whole_array_pack(codes: Codes) -> bytes:
    """The packer as the format was first written (40 bytes of bit planes a code): the reference."""
    bits = codes.meta.bits_per_code
    flat = codes.codes.astype(np.uint32).ravel()
    bit_planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    payload = np.packbits(bit_planes.ravel(), bitorder="little").tobytes()
    header = json.dumps({**codes.meta.to_dict(), "shape": list(codes.codes.shape)}).encode()
    return codes_io.MAGIC + struct.pack("<I", len(header)) + header + payload


@pytest.mark.parametrize("codebook_size, channels, frames", [(1024, 1, 37), (1000, 2, 64), (2, 1, 5), (3, 1, 9),
                                                              (65536, 1, 33), (2 ** 20, 2, 11)])
def test_chunked_pack_is_the_whole_array_pack_and_unpacks_exactly(monkeypatch, codebook_size, channels, frames):
    """Chunks of 8 codes (and of 16, 24): chunk edges inside a byte of the payload are where a chunked
    packer would go wrong; bit widths from 1 to 20."""
    meta = replace(META, codebook_size=codebook_size, channels=channels, channel_mode="split" if channels > 1 else "mono")
    codes = codes_of(frames, seed=codebook_size, meta=meta)
    for chunk in (8, 16, 24, 1 << 18):
        monkeypatch.setattr(codes_io, "CHUNK_CODES", chunk)
        data = pack(codes)
        assert data == whole_array_pack(codes), chunk
        back = unpack(data, "x")
        assert back.codes.dtype == np.int64 and np.array_equal(back.codes, codes.codes), chunk


def test_long_rvq_is_unpacked_in_bounded_memory_and_described_without_unpacking(tmp_path):
    """8 x 300,000 frames (3 MB packed; the whole-array unpacker peaked at ~145x that, 435 MB):
    loading needs the codes (int64, 8 bytes each) and a chunk; `describe` reads the header only."""
    codes = codes_of(300_000)
    path = tmp_path / "long.rvq"
    save_codes(codes, path)
    size, count = path.stat().st_size, codes.codes.size
    tracemalloc.start()
    try:
        facts = describe(str(path))
        described = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        loaded = load_codes(path)
        loading = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        save_codes(loaded, tmp_path / "again.rvq")
        saving = tracemalloc.get_traced_memory()[1] - loaded.codes.nbytes
    finally:
        tracemalloc.stop()
    assert facts["frames"] == 300_000 and facts["packed_bytes"] == size
    assert described < 1_000_000, described
    assert loading < size + 8 * count + 30_000_000, loading
    assert saving < 30_000_000, saving
    assert np.array_equal(loaded.codes, codes.codes)
    assert (tmp_path / "again.rvq").read_bytes() == path.read_bytes()
