"""Parts of a split `rvq tokenize` writing into one directory at the same time: two writers of one
shard never touch each other's temporaries, a killed writer's temporaries are cleaned up, and the
union of the parts is byte for byte the unsplit run."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rvqtool.tokens import jobdir, shards
from tests.cli_harness import env, write_audio
from tests.faults import Faults

ARGS = ["--shard-size", "120", "-f", "wds"]    # one 0.3 s file (23 frames x 8 levels + 2 tokens) a shard


@pytest.fixture(scope="module")
def root(tmp_path_factory, rvq):
    d = tmp_path_factory.mktemp("split_parts")
    for i in range(4):
        write_audio(d / "corpus" / f"{i}.wav", 0.3, seed=i)
    assert rvq("tokenize", "corpus", "-o", "whole", *ARGS, cwd=d).rc == 0
    return d


def finals(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")}


def temporaries(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.startswith(".") and not p.name.startswith(".lock")]


def test_two_parts_started_together_write_the_unsplit_shards(root):
    """Both parts as real processes started at once (the documented Slurm array)."""
    procs = [subprocess.Popen([sys.executable, "-m", "rvqtool.cli", "tokenize", "corpus", "-o", "split", *ARGS,
                               "--shard-index", str(i), "--num-shards", "2"], cwd=root, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outcomes = [(p.wait(timeout=180), p.stderr.read().decode()) for p in procs]
    assert [rc for rc, _ in outcomes] == [0, 0], outcomes
    assert finals(root / "split") == finals(root / "whole")
    assert temporaries(root / "split") == []


def test_two_writers_of_one_shard_both_finish(root):
    """A part paused with shard 0 written but not yet renamed while another writer of shard 0 (here
    the same job split otherwise; a requeued part on another node is the same) runs whole. Before,
    the second deleted or took over the first's `.shard-00000.tar.part` and the first then failed
    with 'unexpected FileNotFoundError'."""
    faults = Faults()
    try:
        argv = ["tokenize", "corpus", "-o", "overlap", *ARGS]
        first = faults.start(*argv, "--shard-index", "0", "--num-shards", "2", cwd=root, pause=(3, "before"))
        assert first.paused()                  # 1 plan.json, 2 vocab.json, 3 shard-00000.tar
        assert [p for p in temporaries(root / "overlap") if p.startswith(".shard-00000.tar.")]
        second = faults(*argv, "--shard-index", "0", "--num-shards", "1", cwd=root)
        assert second.rc == 0, second
        first.release()
        done = first.wait()
        assert done.rc == 0, done
    finally:
        faults.close()
    assert finals(root / "overlap") == finals(root / "whole")
    assert temporaries(root / "overlap") == []


def test_only_abandoned_temporaries_are_removed(tmp_path):
    """A temporary whose writer still holds its lock stays; one nobody holds (a killed writer's shard
    file or record, or an old fixed `.NAME.part` from before unique names) goes."""
    live, fd = shards.create_temporary(tmp_path, "shard-00003.bin")
    dead = tmp_path / ".shard-00003.idx.npy.4242-0000abcd.part.npy"
    record = tmp_path / ".shard-00001.json.4242-0000abcd.part.json"
    old = tmp_path / ".shard-00003.bin.part"
    for path in (dead, record, old):
        path.write_bytes(b"x")
    assert live.name.startswith(f".shard-00003.bin.{os.getpid()}-") and live.name.endswith(".part.bin")
    again, fd_again = shards.create_temporary(tmp_path, "shard-00003.bin")
    assert again != live                       # never the same name twice
    os.close(fd_again)
    job = jobdir.JobDir(tmp_path)
    job.clean_temporaries([3])
    assert live.exists() and not again.exists() and not dead.exists() and not record.exists() and not old.exists()
    probe = os.open(live, os.O_RDONLY)
    with pytest.raises(BlockingIOError):
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(probe)
    os.close(fd)
    job.clean_temporaries([3])
    assert not live.exists()
