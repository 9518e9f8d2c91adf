"""`rvq` on real work: directory batches (mirrored trees, failures reported and skipped, reruns
that skip finished outputs, --overwrite), stdin/stdout pipes, .npy vs .rvq, `rvq info`,
--bandwidth / --n-q, and stereo inputs (downmixed, or split into channels)."""
from __future__ import annotations

import io
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rvqtool.io.codes import load_codes, unpack
from rvqtool.registry import shipped_aliases
from tests.cli_harness import env, files_under, real_rvq, write_audio

DEFAULT = shipped_aliases()["default"]  # the version codes made with --model default record

HOP = 320            # the default model: 24 kHz / 320 = 75 frames per second, 10 bits per code
N_Q = 8
RATE = 24000


def resampled(frames: int, rate: int) -> int:
    return frames if rate == RATE else round(frames * RATE / rate)


def wav_info(data: bytes) -> sf._SoundFileInfo:
    return sf.info(io.BytesIO(data))


def assert_batch_report(res, done: int, skipped: int, bad: list[str], what: str) -> None:
    """Exit 1, one 'error:' line per bad file, then the summary line; nothing else."""
    assert res.rc == 1, res
    assert "Traceback" not in res.stderr, res
    lines = res.err_lines
    assert lines[-1] == f"{what}: {done} done, {skipped} already done, {len(bad)} failed", res
    errors = lines[:-1]
    assert len(errors) == len(bad), res
    assert all(line.startswith("error: ") for line in errors), res
    for name in bad:
        assert sum(name in line for line in errors) == 1, res


def no_temp_files(root) -> bool:
    return not [p for p in root.rglob("*") if ".part" in p.name]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 good files (one at 44.1 kHz stereo, one in a nested subdirectory) and 2 bad ones."""
    d = tmp_path_factory.mktemp("corpus")
    good = {
        "a.wav": write_audio(d / "a.wav", seconds=1.0, seed=1),
        "sub/b.flac": write_audio(d / "sub" / "b.flac", seconds=0.8, sample_rate=44100, channels=2, seed=2),
        "sub/deep/c.wav": write_audio(d / "sub" / "deep" / "c.wav", seconds=0.6, sample_rate=16000, seed=3),
    }
    (d / "bad.wav").write_bytes(np.random.default_rng(4).bytes(6000))
    (d / "sub" / "empty.flac").write_bytes(b"")
    (d / "sub" / "notes.txt").write_text("not audio, and not an audio suffix: ignored\n")
    frames = {name: resampled(sf.info(str(p)).frames, sf.info(str(p)).samplerate) for name, p in good.items()}
    return d, frames


def test_encode_directory_batch(rvq, corpus, tmp_path):
    src, frames = corpus
    out = tmp_path / "codes"
    res = rvq("encode", src, "-o", out, cwd=tmp_path)
    assert_batch_report(res, 3, 0, ["bad.wav", "empty.flac"], "encode")
    expected = {f"{stem}{suffix}" for stem in ("a", "sub/b", "sub/deep/c") for suffix in (".npy", ".npy.json")}
    assert set(files_under(out)) == expected
    for name, n in frames.items():
        stem = out / name.rsplit(".", 1)[0]
        array = np.load(f"{stem}.npy")
        meta = json.loads(Path(f"{stem}.npy.json").read_text())
        assert array.shape == (N_Q, math.ceil(n / HOP)) and array.dtype == np.int16
        assert (meta["length"], meta["channels"], meta["channel_mode"]) == (n, 1, "mono")
    snapshot = files_under(out)

    res = rvq("encode", src, "-o", out, cwd=tmp_path)  # a rerun skips what is done, retries the rest
    assert_batch_report(res, 0, 3, ["bad.wav", "empty.flac"], "encode")
    assert files_under(out) == snapshot  # same files, same inodes, same mtimes

    res = rvq("encode", src, "-o", out, "--overwrite", cwd=tmp_path)
    assert_batch_report(res, 3, 0, ["bad.wav", "empty.flac"], "encode")
    redone = files_under(out)
    assert set(redone) == set(snapshot)
    assert all(redone[name] != snapshot[name] for name in redone)  # every file rewritten
    assert no_temp_files(tmp_path) and not (src / "codes").exists()


def test_encode_files_into_directory(rvq, corpus, tmp_path):
    src, frames = corpus
    res = rvq("encode", src / "a.wav", src / "sub" / "b.flac", "-o", "packed/", "--format", "rvq", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    assert set(files_under(tmp_path / "packed")) == {"a.rvq", "b.rvq"}
    assert load_codes(tmp_path / "packed" / "b.rvq").meta.length == frames["sub/b.flac"]
    # two inputs that would write the same output: refused before anything is written
    res = rvq("encode", src / "a.wav", src / "sub" / "deep" / "c.wav", src / "a.wav", "-o", "clash/", cwd=tmp_path)
    assert res.rc == 1 and res.err_lines[0].startswith("error: ") and "would both write" in res.stderr, res
    assert not (tmp_path / "clash").exists()


def test_decode_directory_batch(rvq, corpus, tmp_path):
    src, frames = corpus
    codes = tmp_path / "codes"
    res = rvq("encode", src, "-o", codes, "--format", "rvq", cwd=tmp_path)  # a.rvq, sub/b.rvq, sub/deep/c.rvq
    assert res.rc == 1, res
    res = rvq("encode", src / "sub" / "deep" / "c.wav", "-o", codes / "sub" / "deep" / "c.npy", cwd=tmp_path)
    assert res.rc == 0, res
    (codes / "sub" / "deep" / "c.rvq").unlink()  # c as .npy + .npy.json, the others packed
    (codes / "orphan.npy").write_bytes((codes / "sub" / "deep" / "c.npy").read_bytes())  # no sidecar
    (codes / "sub" / "cut.rvq").write_bytes((codes / "a.rvq").read_bytes()[:-9])          # truncated
    out = tmp_path / "audio"

    res = rvq("decode", codes, "-o", out, cwd=tmp_path)
    assert_batch_report(res, 3, 0, ["orphan.npy", "cut.rvq"], "decode")
    assert set(files_under(out)) == {"a.wav", "sub/b.wav", "sub/deep/c.wav"}
    for name, n in frames.items():
        info = sf.info(str(out / (name.rsplit(".", 1)[0] + ".wav")))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (RATE, 1, n, "PCM_16")
    snapshot = files_under(out)

    res = rvq("decode", codes, "-o", out, cwd=tmp_path)
    assert_batch_report(res, 0, 3, ["orphan.npy", "cut.rvq"], "decode")
    assert files_under(out) == snapshot

    res = rvq("decode", codes, "-o", out, "--overwrite", cwd=tmp_path)
    assert_batch_report(res, 3, 0, ["orphan.npy", "cut.rvq"], "decode")
    redone = files_under(out)
    assert set(redone) == set(snapshot) and all(redone[k] != snapshot[k] for k in redone)
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("rate,channels", [(RATE, 1), (44100, 2)])
def test_pipe_encode_decode(rvq, tmp_path, rate, channels):
    """rvq encode - -o - | rvq decode - -o -: packed codes, then WAV as long as the input at 24 kHz."""
    wav = write_audio(tmp_path / "in.wav", seconds=1.3, sample_rate=rate, channels=channels)
    n = resampled(sf.info(str(wav)).frames, rate)
    enc = rvq("encode", "-", "-o", "-", cwd=tmp_path, stdin=wav.read_bytes())
    assert enc.rc == 0 and enc.stderr == "", enc
    assert enc.stdout[:4] == b"RVQ1"
    codes = unpack(enc.stdout, "<stdout>")
    assert codes.codes.shape == (1, N_Q, math.ceil(n / HOP)) and codes.meta.length == n
    assert codes.meta.source_sample_rate == rate
    dec = rvq("decode", "-", "-o", "-", cwd=tmp_path, stdin=enc.stdout)
    assert dec.rc == 0 and dec.stderr == "", dec
    info = wav_info(dec.stdout)
    assert (info.format, info.samplerate, info.channels, info.frames) == ("WAV", RATE, 1, n)
    assert set(files_under(tmp_path)) == {"in.wav"}


def test_pipe_between_real_processes(tmp_path):
    """The same through an OS pipe between two processes of the installed `rvq` script."""
    wav = write_audio(tmp_path / "in.wav", seconds=1.3, sample_rate=44100, channels=2)
    n = resampled(sf.info(str(wav)).frames, 44100)
    with open(wav, "rb") as stdin:
        enc = subprocess.Popen([*real_rvq(), "encode", "-", "-o", "-"], stdin=stdin, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path, env=env())
        dec = subprocess.run([*real_rvq(), "decode", "-", "-o", "-"], stdin=enc.stdout, capture_output=True,
                             cwd=tmp_path, env=env(), timeout=120)
        enc.stdout.close()
        enc_err = enc.stderr.read()
        enc.stderr.close()
        assert enc.wait(timeout=60) == 0, enc_err
    assert dec.returncode == 0 and dec.stderr == b"" and enc_err == b"", (dec.stderr, enc_err)
    info = wav_info(dec.stdout)
    assert (info.format, info.samplerate, info.channels, info.frames) == ("WAV", RATE, 1, n)
    assert set(files_under(tmp_path)) == {"in.wav"}


def test_rvq_and_npy_hold_the_same_codes(rvq, tmp_path):
    write_audio(tmp_path / "x.wav", seconds=1.2, sample_rate=44100)
    for out in ("x.rvq", "x.npy"):
        res = rvq("encode", "x.wav", "-o", out, cwd=tmp_path)
        assert res.rc == 0 and res.stderr == "" and res.stdout == b"", res
    packed, plain = load_codes(tmp_path / "x.rvq"), load_codes(tmp_path / "x.npy")
    assert packed.codes.shape == plain.codes.shape == (1, N_Q, math.ceil(packed.meta.length / HOP))
    np.testing.assert_array_equal(packed.codes, plain.codes)
    assert packed.meta == plain.meta
    assert packed.meta.source_sample_rate == 44100
    assert (tmp_path / "x.rvq").stat().st_size < (tmp_path / "x.npy").stat().st_size
    assert set(files_under(tmp_path)) == {"x.wav", "x.rvq", "x.npy", "x.npy.json"}


def test_info(rvq, tmp_path):
    write_audio(tmp_path / "s.wav", seconds=1.0, sample_rate=44100, channels=2)
    for out in ("s.npy", "s.rvq"):
        assert rvq("encode", "s.wav", "-o", out, cwd=tmp_path).rc == 0

    def info(path):
        res = rvq("info", path, "--json", cwd=tmp_path)
        assert res.rc == 0 and res.stderr == "", res
        return json.loads(res.stdout)

    audio = info("s.wav")
    assert audio["type"] == "audio"
    assert (audio["sample_rate"], audio["channels"], audio["frames"]) == (44100, 2, 44100)
    assert audio["duration_s"] == pytest.approx(1.0)

    npy, rvq_ = info("s.npy"), info("s.rvq")
    assert info("s.npy.json") == npy  # the sidecar describes its code file
    frames = math.ceil(RATE / HOP)
    for facts in (npy, rvq_):
        assert facts["type"] == "codes" and facts["model"] == DEFAULT
        assert facts["shape"] == [N_Q, frames] and facts["frames"] == frames
        assert (facts["n_q"], facts["codebook_size"], facts["bits_per_code"]) == (N_Q, 1024, 10)
        assert (facts["channels"], facts["channel_mode"], facts["source_sample_rate"]) == (1, "mono", 44100)
        assert facts["bitrate_kbps"] == pytest.approx(6.0) and facts["frame_rate_hz"] == pytest.approx(75.0)
    assert {k: v for k, v in npy.items() if k != "path"} == {k: v for k, v in rvq_.items() if k != "path"}

    model = info("default")
    assert model["type"] == "model" and model["name"] == DEFAULT
    assert (model["sample_rate"], model["n_quantizers"], model["codebook_size"]) == (RATE, N_Q, 1024)
    assert model["hop_length"] == HOP and model["frame_rate_hz"] == pytest.approx(75.0)
    assert model["bandwidths_kbps"] == pytest.approx([0.75 * k for k in range(1, N_Q + 1)])
    assert npy["model_sha256"] == model["sha256"]

    text = rvq("info", "s.npy", cwd=tmp_path)  # the plain-text form: one "key  value" line per fact
    assert text.rc == 0, text
    lines = text.stdout.decode().splitlines()
    assert len(lines) == len(npy) and lines[0].split() == ["type", "codes"]


@pytest.mark.parametrize("kbps,levels", [(3, 4), (0.75, 1), (2.9, 3), (6, 8), (100, 8)])
def test_bandwidth_picks_levels(rvq, tmp_path, kbps, levels):
    """75 frames/s x 10 bits = 0.75 kbps per level: the most levels that fit the target."""
    write_audio(tmp_path / "x.wav", seconds=0.5)
    res = rvq("encode", "x.wav", "-o", "x.npy", "--bandwidth", str(kbps), cwd=tmp_path)
    assert res.rc == 0, res
    assert np.load(tmp_path / "x.npy").shape == (levels, math.ceil(12000 / HOP))
    assert json.loads((tmp_path / "x.npy.json").read_text())["n_q"] == levels


def test_decode_fewer_levels(rvq, tmp_path):
    write_audio(tmp_path / "x.wav", seconds=1.0)
    assert rvq("encode", "x.wav", "-o", "x.rvq", cwd=tmp_path).rc == 0
    assert load_codes(tmp_path / "x.rvq").meta.n_q == N_Q
    for n_q in ("2", "8"):
        res = rvq("decode", "x.rvq", "-o", f"y{n_q}.wav", "--n-q", n_q, cwd=tmp_path)
        assert res.rc == 0 and res.stderr == "", res
        y, rate = sf.read(str(tmp_path / f"y{n_q}.wav"), dtype="float32")
        assert rate == RATE and y.shape == (RATE,) and np.isfinite(y).all()


def test_stereo_split_and_downmix(rvq, tmp_path):
    wav = write_audio(tmp_path / "st.wav", seconds=1.1, sample_rate=44100, channels=2)
    n = resampled(sf.info(str(wav)).frames, 44100)
    frames = math.ceil(n / HOP)

    assert rvq("encode", "st.wav", "-o", "split.npy", "--channels", "split", cwd=tmp_path).rc == 0
    assert np.load(tmp_path / "split.npy").shape == (2, N_Q, frames)
    meta = json.loads((tmp_path / "split.npy.json").read_text())
    assert (meta["channels"], meta["channel_mode"], meta["length"]) == (2, "split", n)
    res = rvq("decode", "split.npy", "-o", "split.wav", cwd=tmp_path)
    assert res.rc == 0, res
    info = sf.info(str(tmp_path / "split.wav"))
    assert (info.samplerate, info.channels, info.frames) == (RATE, 2, n)

    assert rvq("encode", "st.wav", "-o", "split.rvq", "--channels", "split", "--n-q", "3", cwd=tmp_path).rc == 0
    assert load_codes(tmp_path / "split.rvq").codes.shape == (2, 3, frames)
    res = rvq("decode", "split.rvq", "-o", "-", cwd=tmp_path)
    assert res.rc == 0 and wav_info(res.stdout).channels == 2, res

    assert rvq("encode", "st.wav", "-o", "mono.npy", cwd=tmp_path).rc == 0  # default: downmix
    assert np.load(tmp_path / "mono.npy").shape == (N_Q, frames)
    assert json.loads((tmp_path / "mono.npy.json").read_text())["channel_mode"] == "mono"
    assert rvq("decode", "mono.npy", "-o", "mono.flac", cwd=tmp_path).rc == 0
    info = sf.info(str(tmp_path / "mono.flac"))
    assert (info.format, info.samplerate, info.channels, info.frames) == ("FLAC", RATE, 1, n)


def test_a_directory_of_one_file_resumes_too(rvq, tmp_path):
    (tmp_path / "in").mkdir()
    write_audio(tmp_path / "in" / "a.wav", seconds=0.5)
    assert rvq("encode", "in", "-o", "out", cwd=tmp_path).rc == 0
    before = files_under(tmp_path / "out")
    again = rvq("encode", "in", "-o", "out", "-v", cwd=tmp_path)
    assert again.rc == 0 and "1 already done" in again.stderr, again
    assert files_under(tmp_path / "out") == before
