"""`rvq` on bad input: every failure is one line on stderr starting with "error:", exit code 1
(usage errors: 2), never a traceback, and nothing written -- no output file, no partial file,
no leftover temporary file."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from rvqtool.registry import shipped_aliases
from tests.cli_harness import env, files_under, harmonics, real_rvq, write_audio

DEFAULT = shipped_aliases()["default"]  # the version codes made with --model default record

def assert_user_error(res, *fragments: str, rc: int = 1) -> None:
    """Exit code `rc` (2: a usage mistake), nothing on stdout, one stderr line 'error: ...' holding
    every fragment."""
    assert res.rc == rc, res
    assert "Traceback" not in res.stderr, res
    assert res.stdout == b"", res
    lines = res.err_lines
    assert len(lines) == 1, res
    assert lines[0].startswith("error: "), res
    assert "unexpected" not in lines[0], res  # an anticipated failure, not the catch-all
    for fragment in fragments:
        assert fragment in lines[0], res


def assert_usage_error(res) -> None:
    assert res.rc == 2, res
    assert "Traceback" not in res.stderr, res
    assert "Usage:" in res.stderr, res


@pytest.fixture
def work(tmp_path):
    """A directory with one good input (tone.wav, 1 s at 24 kHz) and a regular file `file.txt`."""
    write_audio(tmp_path / "tone.wav", seconds=1.0)
    (tmp_path / "file.txt").write_text("a regular file, so file.txt/anything cannot be created\n")
    return tmp_path


@pytest.fixture(scope="module")
def codes(tmp_path_factory, rvq):
    """Real codes of a 1 s tone from the CLI: tone.npy (+ .npy.json) and tone.rvq, 8 levels."""
    d = tmp_path_factory.mktemp("codes")
    write_audio(d / "tone.wav", seconds=1.0)
    for out in ("tone.npy", "tone.rvq"):
        res = rvq("encode", "tone.wav", "-o", out, cwd=d)
        assert res.rc == 0, res
    return d


def copy_codes(src, dst, *names):
    for name in names:
        shutil.copy(src / name, dst / name)


# ---- audio inputs ----------------------------------------------------------------------------
def _missing(d):
    return "nope.wav"


def _dir_without_audio(d):
    (d / "notes").mkdir()
    (d / "notes" / "readme.txt").write_text("no audio in here\n")
    return "notes"


def _random_bytes(d):
    (d / "noise.wav").write_bytes(np.random.default_rng(1).bytes(8192))
    return "noise.wav"


def _empty_file(d):
    (d / "empty.wav").write_bytes(b"")
    return "empty.wav"


def _no_frames(d):
    sf.write(str(d / "silent.wav"), np.zeros((0, 1), np.float32), 24000)
    assert (d / "silent.wav").stat().st_size > 0 and sf.info(str(d / "silent.wav")).frames == 0
    return "silent.wav"


def _nan(d):
    x = harmonics(0.5, 24000)
    x[3000, 0] = np.nan
    sf.write(str(d / "nan.wav"), x, 24000, subtype="FLOAT")
    return "nan.wav"


def _inf(d):
    x = harmonics(0.5, 44100, channels=2)  # also on the resampling, downmixing path
    x[-10, 1] = -np.inf
    sf.write(str(d / "inf.wav"), x, 44100, subtype="DOUBLE")
    return "inf.wav"


def _text_txt(d):
    (d / "notes.txt").write_text("these are not samples\n" * 50)
    return "notes.txt"


def _text_mp3(d):  # libsndfile tries mpg123 on it, which must not print its notes on stderr
    (d / "song.mp3").write_text("these are not samples\n" * 50)
    return "song.mp3"


BAD_AUDIO = {
    "missing": (_missing, ["nope.wav", "no such file"]),
    "directory-without-audio": (_dir_without_audio, ["notes", "no ", "files in this directory"]),
    "random-bytes": (_random_bytes, ["noise.wav", "not a readable audio file"]),
    "empty-file": (_empty_file, ["empty.wav", "empty file"]),
    "zero-frames": (_no_frames, ["silent.wav", "no samples"]),
    "nan": (_nan, ["nan.wav", "NaN or infinite"]),
    "inf": (_inf, ["inf.wav", "NaN or infinite"]),
    "text-file": (_text_txt, ["notes.txt", "not a readable audio file"]),
    "text-named-mp3": (_text_mp3, ["song.mp3", "not a readable audio file"]),
}


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_is_refused(rvq, work, case):
    make, fragments = BAD_AUDIO[case]
    source = make(work)
    before = files_under(work)
    # a file, and packed codes on stdout (nothing may reach stdout either); a directory input
    # asks for an output directory
    for out in ("out.npy", "codes/" if case == "directory-without-audio" else "-"):
        res = rvq("encode", source, "-o", out, cwd=work)
        assert_user_error(res, *fragments)
        if case != "missing":  # libsndfile's words when mpg123 gives up; the file does exist
            assert "does not exist" not in res.stderr, res
    assert files_under(work) == before


@pytest.mark.parametrize("case,fragment", [("missing", "no such file"), ("random-bytes", "not a readable"),
                                           ("empty-file", "empty file"), ("text-named-mp3", "not a readable")])
def test_info_on_bad_audio(rvq, work, case, fragment):
    source = BAD_AUDIO[case][0](work)
    assert_user_error(rvq("info", source, cwd=work), source, fragment)


def test_info_on_directory(rvq, work):
    assert_user_error(rvq("info", ".", cwd=work), "is a directory")


@pytest.mark.parametrize("data", [b"", b"RIFF" + bytes(100), np.random.default_rng(2).bytes(3000)],
                         ids=["empty", "bad-header", "random"])
def test_bad_audio_on_stdin(rvq, work, data):
    before = files_under(work)
    for out in ("x.npy", "-"):
        assert_user_error(rvq("encode", "-", "-o", out, cwd=work, stdin=data), "-:")
    assert files_under(work) == before


# ---- options ---------------------------------------------------------------------------------
def cases(*pairs):
    """(args, fragments) pairs as pytest params named after the args."""
    return [pytest.param(args, fragments, id=" ".join(args)) for args, fragments in pairs]


@pytest.mark.parametrize("args,fragments", cases(
    (["-o", "x.npy", "--n-q", "0"], ["--n-q must be between 1 and 8", "got 0"]),
    (["-o", "x.npy", "--n-q", "9"], ["--n-q must be between 1 and 8", "got 9"]),
    (["-o", "x.rvq", "--n-q", "-3"], ["--n-q must be between 1 and 8"]),
    (["-o", "x.npy", "--bandwidth", "0"], ["--bandwidth must be positive"]),
    (["-o", "x.npy", "--bandwidth", "-1.5"], ["--bandwidth must be positive"]),
    (["-o", "x.npy", "--n-q", "2", "--bandwidth", "3"], ["either --n-q or --bandwidth"]),
    (["-o", "x.npy", "--device", "tpu"], ["--device tpu"]),
    (["-o", "x.npy", "--channels", "both"], ["'both'"]),
    (["-o", "out/", "--format", "zip"], ["--format must be npy or rvq"]),
    (["tone.wav", "-o", "-"], ["-o - (stdout) takes a single input"]),
    (["-o", "-", "--n-q", "0"], ["--n-q must be between 1 and 8"]),
))
def test_encode_usage_mistakes(rvq, work, args, fragments):
    """Option values wrong whatever the input: exit 2 (README), in one line."""
    before = files_under(work)
    assert_user_error(rvq("encode", "tone.wav", *args, cwd=work), *fragments, rc=2)
    assert files_under(work) == before


@pytest.mark.parametrize("args,fragments", cases(
    (["-o", "x.mp4"], ["x.mp4", ".npy or .rvq"]),
    (["-o", "x"], [".npy or .rvq"]),
    (["-o", "file.txt/x.npy"], ["file.txt/x.npy", "cannot write"]),
    (["-o", "file.txt/x.rvq"], ["file.txt/x.rvq", "cannot write"]),
    (["-o", "file.txt/deeper/"], ["file.txt/deeper", "cannot create the output directory"]),
))
def test_bad_encode_options(rvq, work, args, fragments):
    before = files_under(work)
    assert_user_error(rvq("encode", "tone.wav", *args, cwd=work), *fragments)
    assert files_under(work) == before


def test_device_cuda_without_cuda(rvq, work):
    before = files_under(work)
    res = rvq("encode", "tone.wav", "-o", "x.npy", "--device", "cuda", cwd=work)
    if res.rc == 0:
        pytest.skip("this machine has CUDA")
    assert_user_error(res, "no CUDA device")
    assert files_under(work) == before


@pytest.mark.parametrize("args,fragments", cases(
    (["tone.npy", "-o", "x.wav", "--n-q", "0"], ["between 1 and 8", "got 0"]),   # per file: the codes' levels
    (["tone.rvq", "-o", "x.wav", "--n-q", "9"], ["between 1 and 8", "got 9"]),
    (["tone.npy", "-o", "-", "--n-q", "9"], ["between 1 and 8"]),
    (["tone.npy", "-o", "x.wav", "--model", "no-such-model"], ["no-such-model", "not found"]),
    (["tone.rvq", "-o", "x.mp4"], ["x.mp4", "cannot write audio with suffix '.mp4'"]),
    (["tone.rvq", "-o", "x.raw"], ["x.raw", "cannot write audio with suffix '.raw'"]),
    (["tone.npy", "-o", "file.txt/x.wav"], ["file.txt/x.wav", "cannot write"]),
    (["tone.rvq", "-o", "file.txt/deeper/"], ["file.txt/deeper", "cannot create the output directory"]),
))
def test_bad_decode_options(rvq, work, codes, args, fragments):
    copy_codes(codes, work, "tone.npy", "tone.npy.json", "tone.rvq")
    before = files_under(work)
    assert_user_error(rvq("decode", *args, cwd=work), *fragments)
    assert files_under(work) == before


def test_decode_device_is_a_usage_mistake(rvq, work, codes):
    copy_codes(codes, work, "tone.rvq")
    before = files_under(work)
    assert_user_error(rvq("decode", "tone.rvq", "-o", "x.wav", "--device", "tpu", cwd=work), "--device tpu", rc=2)
    assert files_under(work) == before


# ---- code files ------------------------------------------------------------------------------
def _edit_array(value):
    def edit(d):
        array = np.load(d / "tone.npy")
        assert array.shape[0] == 8 and array.dtype == np.int16
        array[3, 5] = value
        np.save(d / "tone.npy", array)
        return "tone.npy"
    return edit


def _edit_meta(**changes):
    def edit(d):
        path = d / "tone.npy.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
        return "tone.npy"
    return edit


def _other_model(d):
    meta = json.loads((d / "tone.npy.json").read_text())
    assert len(meta["model_sha256"]) == 64
    meta["model_sha256"] = "0" * 64
    (d / "tone.npy.json").write_text(json.dumps(meta))
    return "tone.npy"


def _no_sidecar(d):
    (d / "tone.npy.json").unlink()
    return "tone.npy"


def _sidecar_not_json(d):
    (d / "tone.npy.json").write_text("{ this is not json")
    return "tone.npy"


def _float_array(d):
    np.save(d / "tone.npy", np.load(d / "tone.npy").astype(np.float32))
    return "tone.npy"


def _truncate(keep):
    def edit(d):
        data = (d / "tone.rvq").read_bytes()
        (d / "tone.rvq").write_bytes(data[:keep(len(data))])
        return "tone.rvq"
    return edit


def _not_codes(d):
    (d / "tone.npy").write_bytes(np.random.default_rng(3).bytes(500))
    return "tone.npy"


BAD_CODES = {
    # name: (edit, fragments for decode and info; info does not check the model, so None there)
    "index-too-large": (_edit_array(1024), ["tone.npy", "outside [0, 1024)"], True),
    "index-negative": (_edit_array(-1), ["tone.npy", "outside [0, 1024)"], True),
    "other-model": (_other_model, ["tone.npy", f"made by model '{DEFAULT}'", "--model"], False),
    "missing-sidecar": (_no_sidecar, ["tone.npy", "tone.npy.json is missing"], True),
    "sidecar-not-json": (_sidecar_not_json, ["tone.npy.json", "not valid JSON"], True),
    "sidecar-wrong-n_q": (_edit_meta(n_q=4), ["tone.npy", "disagrees with its metadata"], True),
    "sidecar-wrong-length": (_edit_meta(length=100), ["tone.npy", "frames"], True),
    "sidecar-null-hash": (_edit_meta(model_sha256=None), ["tone.npy", "malformed code metadata (model_sha256 is None)"], True),
    "sidecar-text-n_q": (_edit_meta(n_q="8"), ["tone.npy", "malformed code metadata (n_q is '8')"], True),
    "float-codes": (_float_array, ["tone.npy", "must be integers"], True),
    "not-a-code-file": (_not_codes, ["tone.npy", "not a code file"], True),
    "rvq-truncated-payload": (_truncate(lambda n: n - 7), ["tone.rvq", "truncated or corrupt"], True),
    "rvq-truncated-header": (_truncate(lambda n: 40), ["tone.rvq", "corrupt header"], True),
    "rvq-only-magic": (_truncate(lambda n: 6), ["tone.rvq", "not a"], True),
}


@pytest.mark.parametrize("case", list(BAD_CODES))
def test_bad_codes_are_refused(rvq, work, codes, case):
    edit, fragments, info_checks = BAD_CODES[case]
    copy_codes(codes, work, "tone.npy", "tone.npy.json", "tone.rvq")
    source = edit(work)
    before = files_under(work)
    outputs = ("out.wav", "-") if case in ("other-model", "rvq-truncated-payload") else ("out.wav",)
    for out in outputs:  # decoding to stdout fails just the same, with nothing on stdout
        assert_user_error(rvq("decode", source, "-o", out, cwd=work), *fragments)
    if info_checks:
        assert_user_error(rvq("info", source, "--json", cwd=work), *fragments)
    assert files_under(work) == before


def test_bad_codes_on_stdin(rvq, work, codes):
    data = (codes / "tone.rvq").read_bytes()
    before = files_under(work)
    for stdin, fragment in [(b"", "not a packed"), (data[:-5], "truncated or corrupt"),
                            ((codes / "tone.npy").read_bytes(), "not a packed")]:
        assert_user_error(rvq("decode", "-", "-o", "x.wav", cwd=work, stdin=stdin), "<stdin>", fragment)
    assert files_under(work) == before


def test_decode_missing_and_directory_inputs(rvq, work):
    (work / "empty_dir").mkdir()
    before = files_under(work)
    assert_user_error(rvq("decode", "nope.npy", "-o", "x.wav", cwd=work), "nope.npy", "no such file")
    assert_user_error(rvq("decode", "empty_dir", "-o", "x.wav", cwd=work), "empty_dir", "no .npy/.rvq files")
    assert_user_error(rvq("info", "nope.rvq", cwd=work), "nope.rvq", "no such file")
    assert files_under(work) == before


def test_balancer_without_a_loss_to_balance(rvq, work):
    before = files_under(work)
    res = rvq("train", "tone.wav", "-o", "run", "--balance", "--weight-mel", "0", "--weight-stft", "0",
              "--weight-waveform", "0", cwd=work)
    assert_user_error(res, "--balance", rc=2)
    assert files_under(work) == before


@pytest.mark.parametrize("bad", [["--decoder", "wavenet"], ["--decoder", "istft", "--causal"]])
def test_train_refuses_decoders_it_cannot_build(rvq, work, bad):
    before = files_under(work)
    assert_user_error(rvq("train", "tone.wav", "-o", "run", *bad, cwd=work), "--decoder", rc=2)
    assert files_under(work) == before


# ---- usage errors ----------------------------------------------------------------------------
TINY_TRAIN = ["--steps", "2", "--quantizer-warmup", "1", "--batch-size", "2", "--crop-seconds", "0.1",
              "--encoder-filters", "2", "--decoder-filters", "2", "--dimension", "8", "--n-quantizers", "2",
              "--codebook-size", "16"]


@pytest.mark.parametrize("args", [
    ["encode", "tone.wav"],                        # no -o
    ["encode", "tone.wav", "-o", "x.npy", "--n-q", "three"],
    ["encode", "tone.wav", "-o", "x.npy", "--frobnicate"],
    ["decode", "-o", "x.wav"],                     # no input
    ["transmogrify", "tone.wav"],
    ["train", "tone.wav", "-o", "run", "--weight-mel", "-1"],           # a negative weight climbs its loss
    ["train", "tone.wav", "-o", "run", "--adversarial", "--discriminator-filters", "0"],
    *[["train", "tone.wav", "-o", "run", *TINY_TRAIN, *bad] for bad in (   # were tracebacks, or ran
        ["--threads", "-1"], ["--batch-size", "0"], ["--checkpoint-every", "0"], ["--quantizer-dropout", "2"],
        ["--n-quantizers", "0"], ["--codebook-size", "0"], ["--sample-rate", "0"], ["--quantizer-warmup", "-5"],
        ["--lr", "-1"], ["--lr-decay", "2"])],
    [],                                            # no arguments: help, as a usage error
])
def test_usage_errors(rvq, work, args):
    before = files_under(work)
    assert_usage_error(rvq(*args, cwd=work))
    assert files_under(work) == before


# ---- the real entry points, as separate processes ----------------------------------------------
def test_real_processes_report_errors(work):
    """`python -m rvqtool.cli` and the installed `rvq` script, each once: bad input, usage error."""
    before = files_under(work)
    res = subprocess.run([sys.executable, "-m", "rvqtool.cli", "encode", "nope.wav", "-o", "x.npy"],
                         cwd=work, env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stdout == "", res
    assert res.stderr == "error: nope.wav: no such file\n", res
    res = subprocess.run([*real_rvq(), "encode", "tone.wav"], cwd=work, env=env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res
    assert "Missing option '--output'" in res.stderr, res
    assert files_under(work) == before
