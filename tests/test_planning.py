"""Planning scales with the number of files: the tree walk gives exactly sorted(rglob)'s files
without a stat per file, output clashes are found in linear time, and token plans read headers
on threads with the same plan as one by one."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rvqtool import file_jobs
from rvqtool.errors import UserError
from rvqtool.io import inputs
from rvqtool.tokens import plan as planning, sources
from tests.cli_harness import write_audio

SUFFIXES = frozenset({".wav", ".flac"})


def old_walk(directory: Path) -> list[Path]:
    """What the walk was: every path rglob finds, stat-ed, sorted."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def test_walk_gives_sorted_rglobs_files(tmp_path):
    names = ["a.wav", "a-b.wav", "a/b.wav", "a/c/d.WAV", "a.b/c.flac", "B.wav", "b/x.wav", ".hidden.wav",
             ".wav", "x.", "notes.txt", "dir.wav/inside.wav", "z/..wav", "a0/1.wav"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.wav").write_bytes(b"")
    os.symlink(tmp_path / "elsewhere", tmp_path / "linked")            # a symlinked folder: not entered
    os.symlink(tmp_path / "a.wav", tmp_path / "link.wav")              # a symlinked file: a file
    os.symlink(tmp_path / "elsewhere", tmp_path / "folder.wav")        # a symlink to a folder: not a file
    os.symlink(tmp_path / "gone.wav", tmp_path / "dangling.wav")       # a dangling symlink: not a file
    expected = old_walk(tmp_path)
    assert len(expected) == 13
    assert [tmp_path / name for name in inputs.walk(str(tmp_path), SUFFIXES)] == expected


def test_walk_stats_no_file(tmp_path, monkeypatch):
    for i in range(50):
        (tmp_path / f"{i % 5}" / f"{i}.wav").parent.mkdir(exist_ok=True)
        (tmp_path / f"{i % 5}" / f"{i}.wav").write_bytes(b"")
    calls = []
    real = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: calls.append(self) or real(self, **kw))
    jobs = file_jobs.plan([str(tmp_path)], str(tmp_path / "out"), SUFFIXES, ".npy")
    found = sources.collect([str(tmp_path)], SUFFIXES)
    assert len(jobs) == len(found) == 50 and [p for p in calls if p.suffix == ".wav"] == []


def test_clash_detection_is_linear(tmp_path):
    """Planning 4x the files takes about 4x the time (it took 16x: list.count per file); the
    smallest of five timings of each, and a bound (10x) between linear and quadratic, so that a
    busy machine does not decide (walking got 5-10x faster, so each timing is short)."""
    folders = []
    for f in range(16):
        folder = tmp_path / f"{f:02d}"
        folder.mkdir()
        for i in range(1000):
            (folder / f"{f}-{i}.wav").write_bytes(b"")
        folders.append(str(folder))

    def seconds(inputs: list[str]) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            file_jobs.plan(inputs, str(tmp_path / "out"), SUFFIXES, ".npy")
            best = min(best, time.perf_counter() - start)
        return best

    small, large = seconds(folders[:4]), seconds(folders)
    assert large < 10 * small, (small, large)


def test_clash_is_reported_as_before(tmp_path):
    for name in ("x/a.wav", "y/b.wav", "x/b.flac", "y/a.flac"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(UserError, match=r"two inputs would both write out/a\.npy; give them separate"):
        file_jobs.plan([str(tmp_path / "x"), str(tmp_path / "y"), str(tmp_path / "x")], "out", SUFFIXES, ".npy")


def test_headers_read_on_threads_make_the_same_plan(tmp_path, monkeypatch):
    """Chunks of 2 sources on 8 threads against one chunk read in order: the same plan, bad files
    in their places, whichever thread finishes first."""
    from rvqtool import load_codec

    for i in range(9):
        write_audio(tmp_path / f"{i}.wav", 0.05 + 0.01 * i, sample_rate=(16000, 24000, 44100)[i % 3], seed=i)
    (tmp_path / "3.wav").write_bytes(b"not audio")
    codec = load_codec("default")
    found = sources.collect([str(tmp_path)], SUFFIXES)
    template = planning.template_for(codec)
    options = planning.TokenOptions(shard_tokens=100)
    whole = planning.make_plan("tokenize", found, options, template, codec)
    monkeypatch.setattr(planning, "HEADER_CHUNK", 2)
    threaded = planning.make_plan("tokenize", found, options, template, codec)
    assert threaded.to_dict() == whole.to_dict()
    assert [b["id"] for b in whole.bad] == ["3"] and len(whole.files) == 8 and len(whole.shards) > 1


def test_headers_read_on_threads_leave_stderr_alone(tmp_path, monkeypatch):
    """Opening a file mutes fd 2 (libsndfile's MPEG probe prints there); threads doing it at once
    each saved and restored fd 2, and the last could restore /dev/null over the real stderr."""
    from rvqtool import load_codec

    write_audio(tmp_path / "0.wav", 0.02)
    for i in range(1, 400):
        os.link(tmp_path / "0.wav", tmp_path / f"{i}.wav")
    codec = load_codec("default")
    found = sources.collect([str(tmp_path)], SUFFIXES)
    monkeypatch.setattr(planning, "HEADER_CHUNK", 1)
    stderr = os.fstat(2)
    for _ in range(3):
        planning.make_plan("tokenize", found, planning.TokenOptions(), planning.template_for(codec), codec)
        assert (os.fstat(2).st_dev, os.fstat(2).st_ino) == (stderr.st_dev, stderr.st_ino)
