"""`--engine ray` on a local Ray instance writes the same shards as the local engine.
Skipped without Ray (`pip install "ray[data]"`, the `test` extra); ~25 s, most of it Ray starting."""
from __future__ import annotations

import pytest

from tests.cli_harness import write_audio

pytest.importorskip("ray.data")


def test_ray_engine_writes_the_local_shards(rvq, tmp_path):
    for i, (seconds, rate) in enumerate([(0.7, 24000), (0.5, 44100), (0.4, 16000)]):
        write_audio(tmp_path / "c" / f"{i}.wav", seconds, rate, seed=i)
    (tmp_path / "c" / "bad.wav").write_bytes(b"\x00" * 5000)
    args = ["c", "--shard-size", "500", "-f", "wds", "-p", "delay"]
    assert rvq("tokenize", *args, "-o", "local", cwd=tmp_path).rc == 1
    res = rvq("tokenize", *args, "-o", "ray", "--engine", "ray", "--workers", "1", cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 2 and "bad.wav" in res.err_lines[0], res   # nothing from Ray itself
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").glob("shard-*.tar")}
    assert len(local) == 3
    assert {p.name: p.read_bytes() for p in (tmp_path / "ray").glob("shard-*.tar")} == local
    assert (tmp_path / "ray" / "documents.jsonl").read_text() == (tmp_path / "local" / "documents.jsonl").read_text()
