"""`rvq train` in miniature: it learns, logs, checkpoints, and resumes exactly where it stopped."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rvqtool import UserError, load_codec
from rvqtool.config import CodecConfig
from rvqtool.train.trainer import TrainOptions, train
from tests.audio import tone, write

TINY = CodecConfig(encoder_filters=2, decoder_filters=2, dimension=8, n_quantizers=3, codebook_size=16,
                   quantizer_dropout=0.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "sub").mkdir()
    for i in range(3):
        write(root / ("sub" if i else ".") / f"clip{i}.wav", tone(1.0, seed=i))
    return root


def options(steps: int) -> TrainOptions:
    return TrainOptions(steps=steps, batch_size=2, crop_seconds=0.1, init_crops=8, quantizer_warmup=2,
                        checkpoint_every=3, log_every=1, warmup_steps=2, threads=1)


def test_resume_continues_exactly(corpus, tmp_path):
    train([corpus], tmp_path / "a", TINY, options(6))
    train([corpus], tmp_path / "b", TINY, options(3))
    train([corpus], tmp_path / "b", TINY, options(6), resume=True)
    a, b = load_file(tmp_path / "a" / "train_state.safetensors"), load_file(tmp_path / "b" / "train_state.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[0]["n_q"] == 0 and log[-1]["n_q"] >= 1 and len(log[-1]["perplexity"]) == log[-1]["n_q"]
    codec = load_codec(tmp_path / "a" / "model")
    assert codec.config == TINY and codec.encode(tone(0.2)).codes.shape == (1, 3, 15)


def test_resuming_a_finished_run_writes_the_model_under_a_new_name(corpus, tmp_path):
    train([corpus], tmp_path, TINY, options(3))
    path = train([corpus], tmp_path, TINY, options(3), resume=True, name="again")
    assert path == tmp_path / "again.safetensors"
    first, again = load_file(tmp_path / "model.safetensors"), load_file(path)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert json.loads(path.with_suffix(".json").read_text())["training"]["steps"] == 3


def test_an_existing_run_needs_resume(corpus, tmp_path):
    train([corpus], tmp_path, TINY, options(3))
    with pytest.raises(UserError, match="--resume"):
        train([corpus], tmp_path, TINY, options(3))


def test_cli_train_writes_a_usable_model(corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rvqtool.cli", "train", str(corpus), "-o", str(out), "--steps", "4",
           "--batch-size", "2", "--crop-seconds", "0.1", "--quantizer-warmup", "2", "--encoder-filters", "2",
           "--decoder-filters", "2", "--dimension", "8", "--n-quantizers", "2", "--codebook-size", "16",
           "--threads", "1", "--name", "mine", "--half-weights"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "mine.safetensors").exists() and (out / "train_log.jsonl").exists()
    assert load_codec(out / "mine").config.n_quantizers == 2
    again = subprocess.run(cmd[:-1], capture_output=True, text=True)
    assert again.returncode == 1 and again.stderr.startswith("error:") and "--resume" in again.stderr
