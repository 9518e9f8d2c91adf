"""Refusals that used to be silent, usage mistakes that exit 2, and messages that name the fix
(issue 11, points 7 and 8): each case here once exited 0 with a useless result, exited 1 for a
usage mistake, or named the wrong thing to do."""
from __future__ import annotations

import socket
import time
from importlib.metadata import version

import numpy as np
import pytest
import torch

from rvqtool import codebook_training as ct
from rvqtool.codec import load_codec
from rvqtool.errors import UsageError, UserError
from rvqtool.io.codes import CodesMeta
from rvqtool.registry import model_for_codes
from tests.audio import tone, write
from tests.cli_harness import files_under, write_audio


def assert_one_line(res, rc: int, *fragments: str) -> None:
    """Exit code `rc`, nothing on stdout, one stderr line 'error: ...' holding every fragment."""
    assert res.rc == rc, res
    assert res.stdout == b"" and "Traceback" not in res.stderr, res
    assert len(res.err_lines) == 1 and res.err_lines[0].startswith("error: "), res
    assert "unexpected" not in res.err_lines[0], res
    for fragment in fragments:
        assert fragment in res.err_lines[0], res


@pytest.fixture
def work(tmp_path):
    write_audio(tmp_path / "tone.wav", seconds=0.5)
    return tmp_path


def test_version_comes_from_the_package_metadata(rvq, tmp_path):
    res = rvq("--version", cwd=tmp_path)
    assert res.rc == 0 and res.stdout.decode() == f"rvq {version('rvqtool')}\n" and res.stderr == "", res
    assert version("rvqtool") == "0.1.0"


# ---- usage mistakes: exit 2, one line, nothing written ------------------------------------------
TINY_TRAIN = ["--batch-size", "2", "--crop-seconds", "0.1", "--encoder-filters", "2", "--decoder-filters", "2",
              "--dimension", "8", "--n-quantizers", "2", "--codebook-size", "16"]

USAGE = {
    "encode --n-q 9 (8 levels)": (["encode", "tone.wav", "-o", "x.npy", "--n-q", "9"], ["--n-q must be between 1 and 8"]),
    "encode --format xyz": (["encode", "tone.wav", "-o", "out/", "--format", "xyz"], ["--format must be npy or rvq"]),
    "encode --channels both": (["encode", "tone.wav", "-o", "x.npy", "--channels", "both"], ["'both'"]),
    "encode --bandwidth below one level": (["encode", "tone.wav", "-o", "x.npy", "--bandwidth", "0.1"],
                                           ["--bandwidth 0.1 is below one level", "0.75 kbps", "--bandwidth 0.75 or more",
                                            "--n-q 1"]),
    "encode --device tpu": (["encode", "tone.wav", "-o", "x.npy", "--device", "tpu"], ["--device tpu"]),
    "encode stdin and a file": (["encode", "-", "tone.wav", "-o", "x/"], ["'-' (stdin) must be the only input"]),
    "tokenize --format xyz": (["tokenize", "tone.wav", "-o", "t", "--format", "xyz"], ["--format must be one of"]),
    "tokenize --pattern nope": (["tokenize", "tone.wav", "-o", "t", "--pattern", "nope"], ["--pattern must be one of"]),
    "tokenize --n-q 9": (["tokenize", "tone.wav", "-o", "t", "--n-q", "9"], ["--n-q must be between 1 and 8"]),
    "tokenize --index megatron -f parquet": (["tokenize", "tone.wav", "-o", "t", "-f", "parquet", "--index", "megatron"],
                                             ["--index megatron applies to --format bin only, not parquet",
                                              "drop --index, or pass --format bin"]),
    "tokenize --address, local engine": (["tokenize", "tone.wav", "-o", "t", "--address", "10.0.0.1:6379"],
                                         ["--address applies to --engine ray only", "--engine ray --address 10.0.0.1:6379"]),
    "tokenize --workers 0": (["tokenize", "tone.wav", "-o", "t", "--workers", "0"], ["--workers must be at least 1"]),
    "export --pattern nope": (["export", "tone.wav", "-o", "t", "--pattern", "nope"], ["--pattern must be one of"]),
    "detokenize --doc and --id": (["detokenize", "t", "--doc", "0", "--id", "x", "-o", "x.wav"], ["exactly one of"]),
    "eval --compare mp3": (["eval", "tone.wav", "--compare", "mp3"], ["only 'opus'"]),
    "eval --metrics nope": (["eval", "tone.wav", "--metrics", "nope"], ["--metrics: unknown nope"]),
    "eval --n-q 9": (["eval", "tone.wav", "--n-q", "9"], ["--n-q must be between 1 and 8"]),
    "train-codebook --n-q 0": (["train-codebook", "tone.wav", "-o", "m.safetensors", "--n-q", "0"], ["--n-q must be at least 1"]),
    "train --ratios 8,x": (["train", "tone.wav", "-o", "run", "--ratios", "8,x"], ["--ratios must be"]),
    "train --ratios 0,2": (["train", "tone.wav", "-o", "run", *TINY_TRAIN, "--steps", "2", "--ratios", "0,2"],
                           ["--ratios must be integers of 1 or more"]),
    "train --crop-seconds 0": (["train", "tone.wav", "-o", "run", *TINY_TRAIN, "--steps", "2", "--crop-seconds", "0"],
                               ["--crop-seconds must be above 0"]),
    "train --steps before the quantizer warm-up": (
        ["train", "tone.wav", "-o", "run", "--steps", "3", "--quantizer-warmup", "3", *TINY_TRAIN],
        ["--steps 3 ends before the quantizer warm-up (3 steps)", "unfitted codebooks",
         "--steps above 3, or --quantizer-warmup below 3"]),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_mistakes_exit_2(rvq, work, case):
    args, fragments = USAGE[case]
    before = files_under(work)
    assert_one_line(rvq(*args, cwd=work), 2, *fragments)
    assert files_under(work) == before and not (work / "run").exists() and not (work / "t").exists()


def test_bandwidth_of_one_level_or_more_still_picks_the_levels_that_fit():
    codec = load_codec("default")
    assert [codec.levels_for(bandwidth=b) for b in (0.75, 1.0, 3, 6, 100)] == [1, 1, 4, 8, 8]
    with pytest.raises(UsageError, match="below one level"):
        codec.levels_for(bandwidth=0.7)


def test_training_past_the_warm_up_is_not_refused(tmp_path):
    """The refusal is exact: one step past the warm-up fits the codebooks and trains."""
    from rvqtool.config import CodecConfig
    from rvqtool.train.trainer import TrainOptions, train

    write_audio(tmp_path / "c" / "a.wav", seconds=0.5)
    config = CodecConfig(encoder_filters=2, decoder_filters=2, dimension=8, n_quantizers=2, codebook_size=16)
    options = TrainOptions(steps=3, batch_size=2, crop_seconds=0.1, init_crops=4, quantizer_warmup=2,
                           checkpoint_every=3, threads=1)
    path = train([tmp_path / "c"], tmp_path / "run", config, options)
    assert path.exists()
    with pytest.raises(UsageError, match="ends before the quantizer warm-up"):
        train([tmp_path / "c"], tmp_path / "run2", config, TrainOptions(**{**options.__dict__, "quantizer_warmup": 3}))
    assert not (tmp_path / "run2").exists()


# ---- train-codebook: levels that would come out empty --------------------------------------------
def test_codebooks_with_too_few_vectors_for_their_levels_are_refused():
    """300 distinct vectors for 256 codes: level 1 all but memorises them, so level 2 would get
    fewer distinct residuals than codes and every later level nothing (was: written, 0 % used)."""
    features = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(UserError) as refused:
        ct.train_codebooks(features, ct.CodebookOptions(n_q=4, codebook_size=256, iterations=3))
    message = str(refused.value)
    assert message.startswith("300 feature vectors are too few for 4 levels of 256 codes: after level 1 only ")
    assert message.endswith("distinct residuals are left for the 256 codes of level 2: pass more audio, "
                            "a smaller --codebook-size, or --n-q 1")
    codebooks, reports = ct.train_codebooks(features, ct.CodebookOptions(n_q=1, codebook_size=256, iterations=3))
    assert codebooks.shape == (1, 256, 8)                      # the fix it names works
    _, reports = ct.train_codebooks(features, ct.CodebookOptions(n_q=4, codebook_size=16, iterations=3))
    assert all(r.share_used == 1.0 and r.distortion > 0 for r in reports)  # and so does the other


def test_train_codebook_cli_refuses_levels_it_cannot_fill(rvq, tmp_path):
    """The issue's run: 10 clips, 2,100 latent frames, --n-q 12 --codebook-size 2048."""
    (tmp_path / "clips").mkdir()
    for i in range(10):
        write(tmp_path / "clips" / f"{i}.wav", tone(2.8, seed=i))
    before = files_under(tmp_path)
    res = rvq("train-codebook", "clips", "-o", "m/fine.safetensors", "--n-q", "12", "--codebook-size", "2048",
              "--iterations", "2", "--threads", "1", cwd=tmp_path)
    assert_one_line(res, 1, "2,100 feature vectors are too few for 12 levels of 2048 codes", "after level 1 only",
                    "pass more audio", "--n-q 1")
    assert files_under(tmp_path) == before


# ---- messages that name the right fix --------------------------------------------------------------
def _meta(model: str, model_path: str) -> CodesMeta:
    return CodesMeta(model=model, model_sha256="ab" * 32, sample_rate=24000, frame_rate=75.0, hop_length=320,
                     n_q=8, codebook_size=1024, length=24000, channels=1, channel_mode="mono",
                     source_sample_rate=24000, model_path=model_path)


def test_codes_of_a_moved_checkpoint_name_the_kind_path_form(tmp_path):
    with pytest.raises(UserError) as moved:
        model_for_codes(_meta("encodec_24khz", "/gone/encodec_24khz-d7cc33bc.th"), "talk.npy")
    assert str(moved.value).endswith("not at /gone/encodec_24khz-d7cc33bc.th: pass --model encodec_24khz:PATH")
    # our own model files, converted checkpoints included, are named by their path alone
    with pytest.raises(UserError, match="pass --model PATH$"):
        model_for_codes(_meta("encodec_24khz", "/gone/encodec_24khz.safetensors"))
    converted = tmp_path / "encodec_24khz.safetensors"
    converted.write_bytes(b"")
    assert model_for_codes(_meta("encodec_24khz", str(converted))) == str(converted)  # was 'encodec_24khz:...'
    checkpoint = tmp_path / "encodec_24khz-d7cc33bc.th"
    checkpoint.write_bytes(b"")
    assert model_for_codes(_meta("encodec_24khz", str(checkpoint))) == f"encodec_24khz:{checkpoint}"


def test_ray_address_where_nothing_listens_is_named_with_its_cause(rvq, work):
    """Was: minutes of muted retries, then 'unexpected ConnectionError' naming the address Ray
    rewrote 127.0.0.1 into. Now: the address given and the cause, in one line, at once."""
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    res = rvq("tokenize", "tone.wav", "-o", "t", "--engine", "ray", "--address", f"127.0.0.1:{port}", cwd=work)
    assert_one_line(res, 1, f"--address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused)",
                    f"ray start --head --port {port}")
    assert time.monotonic() - started < 30
    assert not (work / "t").exists()


def test_ray_join_failures_keep_the_cause_ray_buries_in_a_traceback():
    """What Ray 2.60 raised joining a token-auth cluster without the token (from a real run): the
    reason is the last line of a traceback inside the cause's message; -v was needed to see it."""
    from rvqtool.tokens.ray_engine import _causes

    buried = RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                          '  File "python/ray/includes/common.pxi", line 119, in ray._raylet.check_status\n'
                          "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token "
                          "is missing or incorrect.\n")
    try:
        try:
            raise buried
        except RuntimeError as exc:
            raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390") from exc
    except ConnectionError as exc:
        line = _causes(exc)
    assert line == ("ConnectionError: Failed to connect to Ray cluster at 192.0.2.2:6390; RuntimeError: Failed to "
                    "connect to GCS. Last connection error: ray.exceptions.AuthenticationError: RPC error: "
                    "InvalidAuthToken: Authentication token is missing or incorrect.")


def test_ray_join_failure_names_the_address_given_and_the_cause(monkeypatch):
    """A cluster that answers but refuses us (here ray.init stood in for): the address given
    first, then Ray's words and their cause; was 'unexpected ConnectionError' naming Ray's rewrite."""
    ray = pytest.importorskip("ray")
    from rvqtool.tokens.ray_engine import ray_engine

    def refuse(**kwargs):
        try:
            raise RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                               "ray.exceptions.AuthenticationError: InvalidAuthToken")
        except RuntimeError as exc:
            raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390") from exc

    monkeypatch.setattr(ray, "init", refuse)
    with socket.socket() as server:  # something listens, so the reachability probe passes
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        run = ray_engine("tokenize", "default", "cpu", 8, 1, address)
        with pytest.raises(UserError) as refused:
            next(run([(0, ["x.wav"])]))
    assert str(refused.value) == (f"--address {address}: cannot join the Ray cluster (ConnectionError: Failed to "
                                  "connect to Ray cluster at 192.0.2.2:6390; RuntimeError: Failed to connect to GCS. "
                                  "Last connection error: ray.exceptions.AuthenticationError: InvalidAuthToken)")
