"""Reading audio: a FLAC stream written without its length (to a pipe, as `ffmpeg ... -f flac -`
writes it: 0 total samples in STREAMINFO) reads whole, and its real length is reported."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rvqtool.io.audio import audio_info, read_audio
from tests.audio import tone, write

STREAMINFO_TOTAL = slice(18, 26)   # sample rate (20 bits), channels (3), bits (5), total samples (36)


def lengthless_by_patching(flac: Path, out: Path) -> Path:
    """What a streamed FLAC has: STREAMINFO's total-samples field is 0 (the encoder could not seek
    back to fill it in)."""
    data = bytearray(flac.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0     # the first metadata block is STREAMINFO
    packed = int.from_bytes(data[STREAMINFO_TOTAL], "big")
    data[STREAMINFO_TOTAL] = (packed & ~((1 << 36) - 1)).to_bytes(8, "big")
    out.write_bytes(bytes(data))
    return out


def lengthless_by_ffmpeg(flac: Path, out: Path) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (the patched file covers the same case)")
    with open(out, "wb") as f:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(flac), "-f", "flac", "-"], stdout=f, check=True)
    return out


@pytest.fixture(params=[lengthless_by_patching, lengthless_by_ffmpeg], ids=["patched", "ffmpeg"])
def streamed(request, tmp_path) -> tuple[Path, Path]:
    """(a normal FLAC, the same audio as a FLAC stream without a length): 2.3 s, 44.1 kHz stereo,
    longer than one 64k-frame read."""
    audio = np.stack([tone(2.3, 44100, seed=1), tone(2.3, 44100, seed=2)])
    flac = write(tmp_path / "normal.flac", audio, 44100)
    return flac, request.param(flac, tmp_path / "streamed.flac")


def test_flac_stream_without_a_length_reads_whole(streamed):
    flac, lengthless = streamed
    frames = audio_info(flac).frames
    assert audio_info(lengthless).frames == frames == int(2.3 * 44100)
    for rate in (44100, 24000):
        for mono in (True, False):
            np.testing.assert_array_equal(read_audio(lengthless, rate, mono), read_audio(flac, rate, mono))


def test_rvq_info_and_encode_of_a_flac_stream_without_a_length(streamed, rvq, tmp_path):
    flac, lengthless = streamed
    res = rvq("info", lengthless, "--json", cwd=tmp_path)
    assert res.rc == 0, res
    assert f'"frames": {int(2.3 * 44100)},' in res.stdout.decode()
    for name in (flac, lengthless):
        res = rvq("encode", name, "-o", f"{name.stem}.npy", "--n-q", "2", cwd=tmp_path)
        assert res.rc == 0 and not res.err_lines, res
    assert (tmp_path / "streamed.npy").read_bytes() == (tmp_path / "normal.npy").read_bytes()
