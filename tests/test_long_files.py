"""Long files in flat memory: `rvq encode` streams codes into the code file window by window and
`rvq decode` reads them from it window by window, with the same bytes as the whole-file path, and
the peak RSS of either does not grow with the file's length."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rvqtool.checkpoint import save_model
from rvqtool.codec import Codec
from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.io.code_stream import NpyCodes, open_codes
from rvqtool.io.codes import load_codes, save_codes
from rvqtool.model.native import NativeCodecModel
from tests.audio import tone, write
from tests.cli_harness import env

TINY = CodecConfig(encoder_filters=4, decoder_filters=4, dimension=16, n_quantizers=4, codebook_size=32)
# many codes per second of audio (3000 frames/s x 64 levels), so that memory that follows the codes
# shows within a minute of audio: before streaming, 60 s peaked 153 MB (encode) and 57 MB (decode) above 10 s
HIGH_RATE = CodecConfig(ratios=(2, 2, 2), encoder_filters=2, decoder_filters=2, dimension=8,
                        n_quantizers=64, codebook_size=16)


def make_model(config: CodecConfig) -> NativeCodecModel:
    torch.manual_seed(0)
    model = NativeCodecModel(config)
    model.quantizer.init_from_latents(torch.randn(512, config.dimension) * 0.05)
    return model.eval()


def codec_of(config: CodecConfig, chunk_seconds: float) -> Codec:
    return Codec(make_model(config), {"name": "tiny", "sha256": "0" * 64}, Path("tiny.safetensors"),
                 torch.device("cpu"), chunk_seconds)


@pytest.mark.parametrize("channels,mode,suffix", [(1, "mono", ".npy"), (2, "split", ".npy"), (2, "mono", ".rvq")])
def test_streamed_code_file_is_the_whole_file_path_byte_for_byte(tmp_path, channels, mode, suffix):
    """3.3 s at 44.1 kHz in windows of 0.2 s (17 windows, resampled, read in 0.5 s blocks)."""
    codec = codec_of(TINY, chunk_seconds=0.2)
    audio = np.stack([tone(3.3, 44100, seed=s) for s in range(channels)])
    wav = write(tmp_path / "in.wav", audio, 44100)
    whole, streamed = tmp_path / f"whole{suffix}", tmp_path / f"streamed{suffix}"
    save_codes(codec.encode_file(wav, channel_mode=mode), whole)
    codec.encode_file_to(wav, streamed, channel_mode=mode)
    assert streamed.read_bytes() == whole.read_bytes()
    if suffix == ".npy":
        assert Path(f"{streamed}.json").read_text() == Path(f"{whole}.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.wav", whole.name, streamed.name]
                                                                + [f"{p.name}.json" for p in (whole, streamed)
                                                                   if suffix == ".npy"])


@pytest.mark.parametrize("mode", ["mono", "split"])
def test_decoding_from_the_file_window_by_window_is_the_whole_decode(tmp_path, mode):
    codec = codec_of(TINY, chunk_seconds=0.3)
    wav = write(tmp_path / "in.wav", np.stack([tone(1.3, seed=1), tone(1.3, seed=2)]))
    codec.encode_file_to(wav, tmp_path / "c.npy", channel_mode=mode)
    on_disk = open_codes(tmp_path / "c.npy")
    assert isinstance(on_disk, NpyCodes)
    loaded = load_codes(tmp_path / "c.npy")
    np.testing.assert_array_equal(on_disk.window(0, on_disk.frames, loaded.meta.n_q), loaded.codes)
    for levels in (None, 2):
        codec.decode_to_file(on_disk, tmp_path / "a.wav", levels)
        codec.decode_to_file(loaded, tmp_path / "b.wav", levels)
        assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_window_reader_refuses_what_load_codes_refuses_in_the_same_words(tmp_path):
    codec = codec_of(TINY, chunk_seconds=0.2)
    codec.encode_file_to(write(tmp_path / "in.wav", tone(1.0)), tmp_path / "c.npy")
    path = tmp_path / "c.npy"
    data = bytearray(path.read_bytes())

    def refusals(last: int) -> list[str]:
        data[-2:] = np.int16(last).tobytes()
        path.write_bytes(bytes(data))
        messages = []
        for read in (load_codes, open_codes):
            with pytest.raises(UserError) as caught:
                read(path)
            messages.append(str(caught.value))
        return messages

    messages = refusals(999)                               # out of range, and no longer the hashed bytes
    assert messages[0] == messages[1] and "code indices outside [0, 32)" in messages[0]
    messages = refusals(1)                                 # in range, but not the bytes the sidecar hashed
    assert messages[0] == messages[1] and "does not match its metadata" in messages[0]


def peak_rss_mb(argv: list[str]) -> float:
    """Peak RSS of one child process (os.wait4: that child's own, not the largest child's so far)."""
    proc = subprocess.Popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    return usage.ru_maxrss / 1024


def test_peak_memory_of_encode_and_decode_does_not_grow_with_length(tmp_path):
    """`rvq encode` and `rvq decode` of 60 s vs 5 s with a model of 192,000 codes per second: the
    whole-file path held them as int64 (encode: twice, decode: beside the file's bytes), so the
    longer file peaked higher (numbers above HIGH_RATE); streamed, the peaks differ by noise."""
    model = save_model(make_model(HIGH_RATE), tmp_path / "high_rate.safetensors", "high-rate")
    rvq = [sys.executable, "-m", "rvqtool.cli"]
    peaks = {}
    for seconds in (5, 60):
        wav = tmp_path / f"{seconds}.wav"
        with sf.SoundFile(wav, "w", 24000, 1, subtype="PCM_16") as f:
            for start in range(0, seconds, 5):
                f.write(tone(5.0, seed=start))
        npy = tmp_path / f"{seconds}.npy"
        peaks["encode", seconds] = peak_rss_mb([*rvq, "encode", str(wav), "-o", str(npy), "--model", str(model)])
        peaks["decode", seconds] = peak_rss_mb([*rvq, "decode", str(npy), "-o", str(tmp_path / f"{seconds}d.wav")])
        assert sf.info(str(tmp_path / f"{seconds}d.wav")).frames == seconds * 24000
    for step in ("encode", "decode"):
        assert peaks[step, 60] - peaks[step, 5] < 20, peaks
