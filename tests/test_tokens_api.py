"""`from rvqtool.tokens import tokenize, export`: the Python API makes the CLI's choices, so it and
`rvq tokenize`/`rvq export` write byte-identical job directories for the same inputs, and refuse
the same options with the same words."""
from __future__ import annotations

from pathlib import Path

import pytest

from rvqtool.errors import Failure, UsageError
from rvqtool.tokens import RunOptions, TokenOptions, export, tokenize
from tests.cli_harness import write_audio


def job_files(out: Path) -> dict[str, bytes]:
    """Every file of a job directory (plan, records, shards, vocab, manifest, lists), by name."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("api_corpus")
    write_audio(d / "a.wav", 0.5, 24000, seed=1)
    write_audio(d / "sub" / "b.wav", 0.3, 44100, seed=2)
    (d / "bad.wav").write_bytes(b"\x00" * 3000)
    return d


def test_api_and_cli_tokenize_write_the_same_bytes(rvq, corpus, tmp_path):
    res = rvq("tokenize", corpus, "-o", "cli", "--shard-size", "300", "-p", "delay", "-f", "jsonl", cwd=tmp_path)
    assert res.rc == 1 and "bad.wav" in res.err_lines[0], res
    seen: list[dict | Failure] = []
    summary = tokenize([corpus], tmp_path / "api", TokenOptions(format="jsonl", pattern="delay", shard_tokens=300),
                       on_file=lambda entry, seconds: seen.append(entry))
    assert summary.complete and summary.files_done == 2 and [f.path for f in summary.failures] == [str(corpus / "bad.wav")]
    assert sorted(e["id"] for e in seen) == ["a", "sub/b"]          # bad.wav fails at planning, never encoded
    cli = job_files(tmp_path / "cli")
    assert job_files(tmp_path / "api") == cli and "manifest.json" in cli and len(cli) > 6


def test_api_and_cli_export_write_the_same_bytes(rvq, corpus, tmp_path, monkeypatch):
    assert rvq("encode", corpus / "a.wav", corpus / "sub" / "b.wav", "-o", "codes/", cwd=tmp_path).rc == 0
    assert rvq("export", "codes", "-o", "cli", "--shard-size", "200", "-f", "bin", cwd=tmp_path).rc == 0
    monkeypatch.chdir(tmp_path)                  # sources named as the CLI got them: the same plan
    summary = export(["codes"], "api", TokenOptions(shard_tokens=200))
    assert summary.complete and not summary.failures and summary.files_done == 2
    cli = job_files(tmp_path / "cli")
    assert job_files(tmp_path / "api") == cli and "shard-00000.bin" in cli


@pytest.mark.parametrize("run, message", [
    (RunOptions(workers=0), "--workers must be at least 1, got 0"),
    (RunOptions(batch_windows=-1), "--batch-windows must be >= 0, got -1"),
    (RunOptions(shard_index=1), "--shard-index and --num-shards go together"),
    (RunOptions(engine="spark"), "--engine must be local or ray, got spark"),
    (RunOptions(address="10.0.0.1:6379"), "--address applies to --engine ray only"),
])
def test_api_refuses_what_the_cli_refuses(corpus, tmp_path, run, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        tokenize([corpus], tmp_path / "out", run=run)
    assert not (tmp_path / "out").exists()


def test_api_leaves_the_callers_torch_threads(corpus, tmp_path):
    import torch

    before = torch.get_num_threads()
    tokenize([corpus / "a.wav"], tmp_path / "out", run=RunOptions(threads=before + 1))
    assert torch.get_num_threads() == before
