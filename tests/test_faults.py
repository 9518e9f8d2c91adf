"""Faults from outside: `kill -9` at chosen instants of `rvq encode DIR`, `rvq tokenize` and
`rvq train` (then the same command again, or --resume), a full disk, a read-only output
directory, and two jobs on one output. Whatever the fault, no file that looks complete is wrong,
a rerun ends byte-identical to an uninterrupted run, and no temporary file stays behind.

The instants are the runs' `os.replace` calls (tests/faults.py: a file's content changes on disk
only there), just before or just after one, drawn with a fixed seed from those an uninterrupted
run makes; each outcome is then checked against the invariant, never expected to be a given one.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from rvqtool.errors import UserError
from rvqtool.io.codes import load_codes
from tests.cli_harness import files_under, write_audio
from tests.faults import Faults, recorded

SEED = 11
KILLS = 4                                     # kill points per command
CORPUS = {"a": 0.4, "b": 0.5, "sub/c": 0.6, "sub/d": 0.3}   # seconds each
TOKENIZE = ["--shard-size", "300"]            # one file a shard: more instants between shards
TRAIN = ["--steps", "4", "--batch-size", "2", "--crop-seconds", "0.1", "--quantizer-warmup", "2",
         "--encoder-filters", "2", "--decoder-filters", "2", "--dimension", "8", "--n-quantizers", "2",
         "--codebook-size", "16", "--threads", "1", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def faults():
    runner = Faults()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The working directory of every run: corpus/ and the uninterrupted runs' outputs."""
    d = tmp_path_factory.mktemp("faults")
    for i, (name, seconds) in enumerate(CORPUS.items()):
        write_audio(d / "corpus" / f"{name}.wav", seconds, seed=i)
    return d


@pytest.fixture(scope="module")
def reference(faults, root):
    """Each command run once, uninterrupted, with every file version it put in place."""
    runs = {"encode": ["encode", "corpus", "-o", "ref-encode"],
            "encode-v1": ["encode", "corpus", "-o", "ref-encode-v1", "--model", "default-v1"],
            "tokenize": ["tokenize", "corpus", "-o", "ref-tokenize", *TOKENIZE],
            "train": ["train", "corpus", "-o", "ref-train", *TRAIN]}
    out = {}
    for kind, argv in runs.items():
        result = faults(*argv, cwd=root, record=root / f"rec-{kind}")
        assert result.rc == 0, result
        out[kind] = recorded(root / f"rec-{kind}")
    return out


def kill_points(total: int, salt: str, count: int = KILLS) -> list[tuple[int, str]]:
    """`count` distinct instants of a run that makes `total` replaces, the same on every machine."""
    instants = [(n, when) for n in range(1, total + 1) for when in ("before", "after")]
    return sorted(random.Random(f"{SEED}-{salt}").sample(instants, min(count, len(instants))))


def after_each_file(versions: list[tuple[str, bytes]], salt: str, count: int = KILLS) -> list[tuple[int, str]]:
    """Just after one write (drawn with the seed) of each file the run writes, so that every gap
    between two consecutive writes is hit once (for a checkpoint: between its files), then
    instants drawn as in `kill_points` up to `count`."""
    rng = random.Random(f"{SEED}-{salt}")
    writes: dict[str, list[int]] = {}
    for n, (target, _) in enumerate(versions, 1):
        writes.setdefault(target, []).append(n)
    chosen = [(rng.choice(ns), "after") for _, ns in sorted(writes.items())][:count]
    rest = [p for p in kill_points(len(versions), salt, len(versions) * 2) if p not in chosen]
    return sorted(chosen + rest[:count - len(chosen)])


def finals(d: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under `d` by the name a user sees (no temporaries, no locks) -> its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name not in skip}


def leftovers(d: Path) -> list[str]:
    """Temporary files: hidden names (other than the lock files a job keeps) and *.part*."""
    return [str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()
            and ((p.name.startswith(".") and not p.name.startswith(".lock")) or ".part" in p.name)]


def fresh(root: Path, name: str) -> Path:
    shutil.rmtree(root / name, ignore_errors=True)
    return root / name


# ---- kill -9 -----------------------------------------------------------------------------------
def code_versions(root: Path, *refs: str) -> dict[str, dict[str, tuple]]:
    """For each code file of the corpus, the (codes, metadata) each reference run in `refs` wrote."""
    out: dict[str, dict[str, tuple]] = {}
    for ref in refs:
        for p in sorted((root / ref).rglob("*.npy")):
            codes = load_codes(p)
            out.setdefault(str(p.relative_to(root / ref)), {})[ref] = (codes.codes.tolist(), codes.meta)
    return out


def check_code_pairs(out: Path, versions: dict[str, dict[str, tuple]], refused_ok: bool) -> None:
    """Every .npy either holds, with its metadata, what one uninterrupted run wrote, or (only while a
    killed run's leftovers are there, if `refused_ok`) is refused when loaded."""
    for p in sorted(out.rglob("*.npy")):
        name = str(p.relative_to(out))
        if p.name.startswith("."):
            continue
        try:
            codes = load_codes(p)
        except UserError as exc:
            assert refused_ok, f"{name}: refused after a completed rerun ({exc})"
            continue
        array = [ref for ref, (expected, _) in versions[name].items() if codes.codes.tolist() == expected]
        meta = [ref for ref, (_, expected) in versions[name].items() if codes.meta == expected]
        assert set(array) & set(meta), f"{name} is accepted with the codes of {array or 'no run'} " \
                                       f"and the metadata of {meta or 'no run'}"


@pytest.mark.parametrize("point", range(KILLS))
def test_encode_killed_then_rerun_equals_an_uninterrupted_run(faults, root, reference, point):
    """`rvq encode DIR -o OUT` killed at an instant, then run again: the same files, byte for byte."""
    when = kill_points(len(reference["encode"]), "encode")[point]
    out = fresh(root, f"encode-{point}")
    argv = ["encode", "corpus", "-o", out.name]
    killed = faults(*argv, cwd=root, kill=when)
    assert killed.signal == signal.SIGKILL, killed
    check_code_pairs(out, code_versions(root, "ref-encode"), refused_ok=True)
    again = faults(*argv, cwd=root)
    assert again.rc == 0, again
    assert finals(out) == finals(root / "ref-encode"), f"killed {when}"
    assert leftovers(out) == [], f"killed {when}"


@pytest.mark.parametrize("point", range(KILLS))
def test_encode_overwrite_with_another_model_killed_leaves_no_mixed_pair(faults, root, reference, point):
    """Codes of default-v1 re-encoded with --overwrite by the default model, killed at an instant:
    no .npy is accepted with the other model's metadata, neither then nor after a plain rerun
    (which skips what is done and must redo what is not)."""
    when = kill_points(len(reference["encode"]), "overwrite")[point]
    out = fresh(root, f"overwrite-{point}")
    shutil.copytree(root / "ref-encode-v1", out)
    killed = faults("encode", "corpus", "-o", out.name, "--overwrite", cwd=root, kill=when)
    assert killed.signal == signal.SIGKILL, killed
    versions = code_versions(root, "ref-encode", "ref-encode-v1")
    check_code_pairs(out, versions, refused_ok=True)
    again = faults("encode", "corpus", "-o", out.name, cwd=root)
    assert again.rc == 0, again
    check_code_pairs(out, versions, refused_ok=False)
    assert leftovers(out) == [], f"killed {when}"


@pytest.mark.parametrize("point", range(KILLS))
def test_tokenize_killed_then_rerun_equals_an_uninterrupted_run(faults, root, reference, point):
    """`rvq tokenize` killed at an instant: every file there by its final name is already the
    uninterrupted run's; the rerun finishes with exactly its files and no temporaries."""
    when = kill_points(len(reference["tokenize"]), "tokenize")[point]
    out = fresh(root, f"tokenize-{point}")
    argv = ["tokenize", "corpus", "-o", out.name, *TOKENIZE]
    killed = faults(*argv, cwd=root, kill=when)
    assert killed.signal == signal.SIGKILL, killed
    expected = finals(root / "ref-tokenize")
    for name, data in finals(out).items():
        assert data == expected[name], f"{name} differs from the uninterrupted run's (killed {when})"
    again = faults(*argv, cwd=root)
    assert again.rc == 0, again
    assert finals(out) == expected, f"killed {when}"
    assert leftovers(out) == [], f"killed {when}"


def generation(versions: list[tuple[str, bytes]], name: str, data: bytes) -> int:
    """Which write of `name` (1, 2, ...) in the uninterrupted run put exactly these bytes there."""
    writes = [content for target, content in versions if Path(target).name == name]
    assert data in writes, f"{name}: bytes that the uninterrupted run never wrote"
    return writes.index(data) + 1


@pytest.mark.parametrize("point", range(KILLS))
def test_train_killed_then_resumed_equals_an_uninterrupted_run(faults, root, reference, point):
    """`rvq train --checkpoint-every 1` killed just after a write of each of its files: the state's
    step and its weights, and a model's weights and its metadata, come from the same checkpoint;
    --resume then ends with the uninterrupted run's state and model, byte for byte."""
    from rvqtool.checkpoint import load_model

    versions = reference["train"]
    when = after_each_file(versions, "train")[point]
    out = fresh(root, f"train-{point}")
    argv = ["train", "corpus", "-o", out.name, *TRAIN]
    killed = faults(*argv, cwd=root, kill=when)
    assert killed.signal == signal.SIGKILL, killed
    on_disk = finals(out, skip=("train_log.jsonl",))
    steps = {name: generation(versions, name, data) for name, data in on_disk.items()}
    for weights, meta in (("train_state.safetensors", "train_state.json"), ("model.safetensors", "model.json")):
        if weights in steps and meta in steps:
            assert steps[weights] == steps[meta], f"killed {when}: {weights} of checkpoint {steps[weights]}, " \
                                                  f"{meta} of checkpoint {steps[meta]}"
    if "model.safetensors" in steps:
        load_model(out / "model.safetensors")       # a model that is there loads
    resumed = faults(*argv, "--resume", cwd=root)
    assert resumed.rc == 0, resumed
    assert finals(out, skip=("train_log.jsonl",)) == finals(root / "ref-train", skip=("train_log.jsonl",)), \
        f"killed {when}"
    assert json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])["step"] == 4
    assert leftovers(out) == [], f"killed {when}"


# ---- a full disk, a read-only directory ----------------------------------------------------------
@contextlib.contextmanager
def small_fs(where: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` mounted at `where` (root only: else the test is skipped)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True, timeout=30)


def fill(fs: Path, leave: int) -> Path:
    """Take all of `fs`'s free space but `leave` blocks (tmpfs: pages; a file takes whole ones)."""
    stats = os.statvfs(fs)
    filler = fs / "filler"
    filler.write_bytes(b"\0" * (max(0, stats.f_bavail - leave) * stats.f_frsize))
    return filler


def one_line_per_failure(result, what: str) -> None:
    """A failed batch: exit 1, one `error:` line per failure (and the batch's summary), no traceback."""
    assert result.rc == 1 and "Traceback" not in result.stderr, result
    for line in result.err_lines:
        assert line.startswith("error:") or line.startswith(f"{what}:"), result


@pytest.mark.parametrize("command, blocks", [("encode", 3), ("tokenize", 6)])
def test_disk_full_fails_in_one_line_and_a_rerun_completes(faults, root, reference, tmp_path, command, blocks):
    """Out of space part-way (room for a file or a shard and a half): one line per failure naming
    the cause, nothing by a final name that is wrong, no temporaries; with space freed, the same
    command finishes the job."""
    argv = [command, "corpus", "-o", str(tmp_path / "fs" / "out")] + (TOKENIZE if command == "tokenize" else [])
    ref = root / f"ref-{command}"
    with small_fs(tmp_path / "fs", "1m") as fs:
        filler = fill(fs, leave=blocks)
        full = faults(*argv, cwd=root)
        one_line_per_failure(full, command)
        assert "No space left on device" in full.stderr, full
        if command == "tokenize":
            assert len(full.err_lines) == 1, full
        out = fs / "out"
        if command == "encode":
            check_code_pairs(out, code_versions(root, "ref-encode"), refused_ok=False)
        else:
            expected = finals(ref)
            assert all(data == expected[name] for name, data in finals(out).items())
        assert leftovers(out) == []
        filler.unlink()
        again = faults(*argv, cwd=root)
        assert again.rc == 0, again
        assert finals(out) == finals(ref) and leftovers(out) == []


@pytest.mark.parametrize("argv", [["encode", "corpus/a.wav", "-o", "RO/a.npy"], ["encode", "corpus", "-o", "RO"],
                                  ["encode", "corpus", "-o", "RO/codes"], ["tokenize", "corpus", "-o", "RO", *TOKENIZE],
                                  ["tokenize", "corpus", "-o", "RO/shards", *TOKENIZE],
                                  ["train", "corpus", "-o", "RO/run", *TRAIN]], ids=lambda argv: " ".join(argv[:4]))
def test_read_only_output_is_refused_in_one_line(faults, root, tmp_path, argv):
    """An output directory on a read-only file system (root ignores file modes: a tmpfs mounted ro):
    one line, exit 1, even for a batch (the same cause, not a bad input file each)."""
    with small_fs(tmp_path / "ro", "1m", read_only=True) as ro:
        result = faults(*[a.replace("RO", str(ro)) for a in argv], cwd=root)
        assert result.rc == 1 and len(result.err_lines) == 1, result
        assert result.err_lines[0].startswith("error:") and str(ro) in result.stderr, result
        assert list(ro.iterdir()) == []


# ---- two jobs on one output --------------------------------------------------------------------
def test_second_tokenize_on_one_output_is_refused(faults, root, reference):
    """A second job while the first holds the directory (paused just before it writes plan.json):
    refused in one line, touching nothing; the first then finishes as if alone."""
    out = fresh(root, "tokenize-twice")
    argv = ["tokenize", "corpus", "-o", out.name, *TOKENIZE]
    first = faults.start(*argv, cwd=root, pause=(1, "before"))
    assert first.paused()
    before = files_under(out)
    second = faults(*argv, cwd=root)
    assert second.rc == 1 and len(second.err_lines) == 1 and "another job is writing here" in second.stderr, second
    assert files_under(out) == before
    first.release()
    done = first.wait()
    assert done.rc == 0, done
    assert finals(out) == finals(root / "ref-tokenize") and leftovers(out) == []


def test_split_parts_at_once_write_the_unsplit_shards(faults, root, reference):
    """Two parts of a split job in one directory, the second run whole while the first waits with
    a shard half-renamed: both finish, and the directory holds exactly the unsplit run's files."""
    out = fresh(root, "tokenize-split")
    argv = ["tokenize", "corpus", "-o", out.name, *TOKENIZE, "--num-shards", "2", "--shard-index"]
    first = faults.start(*argv, "0", cwd=root, pause=(4, "before"))    # between shard-00000's two files
    assert first.paused()
    second = faults(*argv, "1", cwd=root)
    assert second.rc == 0, second
    first.release()
    done = first.wait()
    assert done.rc == 0, done
    assert finals(out) == finals(root / "ref-tokenize") and leftovers(out) == []


@pytest.mark.parametrize("model", ["default", "default-v1"])
def test_second_encode_on_one_output_never_mixes_outputs(faults, root, reference, model):
    """`rvq encode DIR -o OUT` twice at once, the first paused between a file's metadata and its
    array: the second is refused in one line or both complete, and every code file is wholly one
    run's (same command: exactly the uninterrupted run's files)."""
    out = fresh(root, f"encode-twice-{model}")
    first = faults.start("encode", "corpus", "-o", out.name, cwd=root, pause=(1, "after"))
    assert first.paused()
    second = faults("encode", "corpus", "-o", out.name, "--model", model, cwd=root)
    assert second.rc == 0 or (second.rc == 1 and len(second.err_lines) == 1
                              and second.err_lines[0].startswith("error:")), second
    first.release()
    done = first.wait()
    assert done.rc == 0, done
    check_code_pairs(out, code_versions(root, "ref-encode", "ref-encode-v1"), refused_ok=False)
    if model == "default":
        assert finals(out) == finals(root / "ref-encode")
    assert leftovers(out) == []
