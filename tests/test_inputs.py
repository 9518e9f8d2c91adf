"""One input resolver for every command: the same files from directories, globs, manifests and
'-', whichever command reads them, and one error line for a missing input, an empty manifest or
a manifest without a path column. Empty files stand in for audio: nothing here is read."""
from __future__ import annotations

import io
import json
import sys

import pytest

from rvqtool import file_jobs
from rvqtool.errors import UserError
from rvqtool.evaluation import resolve as eval_items
from rvqtool.io.audio import AUDIO_SUFFIXES
from rvqtool.io.inputs import resolve
from rvqtool.tokens import sources
from rvqtool.train.data import find_audio


@pytest.fixture
def tree(tmp_path):
    for name in ("corpus/speech/a.wav", "corpus/speech/b.flac", "corpus/music/c.wav", "corpus/d.wav",
                 "corpus/notes.txt", "extra/e.ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def paths_by_command(monkeypatch, inputs: list[str], stdin: str = "") -> dict[str, list[str]]:
    """The files each command would read for these inputs (`rvq encode` only for files: its '-' is the audio)."""
    def read(files) -> list[str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return [str(f) for f in files()]

    out = {} if "-" in inputs else {"encode": read(lambda: (job.source for job in file_jobs.plan(
        inputs, "out/", AUDIO_SUFFIXES, ".npy", "audio")))}
    out["tokenize"] = read(lambda: (s.path for s in sources.collect(inputs, AUDIO_SUFFIXES, what="audio")))
    out["eval"] = read(lambda: (item.path for item in eval_items(inputs)))
    out["train"] = read(lambda: find_audio(inputs))
    return out


def test_every_command_reads_the_same_files(tree, monkeypatch):
    (tree / "list.txt").write_text("# two files, relative to this folder\ncorpus/d.wav\n\nextra/e.ogg\n")
    (tree / "rows.jsonl").write_text(json.dumps({"path": "corpus/music/c.wav", "id": "tune"}) + "\n")
    (tree / "rows.tsv").write_text("audio_filepath\tspeaker\ncorpus/speech/a.wav\t7\n")
    cases = [
        [str(tree / "corpus")],                                    # walked sorted, notes.txt not audio
        [str(tree / "corpus" / "speech" / "*.wav"), str(tree / "extra" / "e.ogg")],   # a glob and a file
        [str(tree / "list.txt")], [str(tree / "rows.jsonl")], [str(tree / "rows.tsv")],
    ]
    expected = [
        [str(tree / p) for p in ("corpus/d.wav", "corpus/music/c.wav", "corpus/speech/a.wav", "corpus/speech/b.flac")],
        [str(tree / "corpus/speech/a.wav"), str(tree / "extra/e.ogg")],
        [str(tree / "corpus/d.wav"), str(tree / "extra/e.ogg")],
        [str(tree / "corpus/music/c.wav")], [str(tree / "corpus/speech/a.wav")],
    ]
    for inputs, want in zip(cases, expected):
        assert paths_by_command(monkeypatch, inputs) == dict.fromkeys(("encode", "tokenize", "eval", "train"), want), inputs
    stdin = f"{tree}/corpus/d.wav\n\n{tree}/extra/e.ogg\n"
    assert paths_by_command(monkeypatch, ["-"], stdin) == dict.fromkeys(
        ("tokenize", "eval", "train"), [f"{tree}/corpus/d.wav", f"{tree}/extra/e.ogg"])


def test_fixed_disagreements(tree):
    """`rvq eval` took a .txt manifest for an audio file and read only a 'file' column, `rvq train`
    took a .jsonl manifest for an audio file; eval refused '-'."""
    (tree / "list.txt").write_text("corpus/speech/a.wav\n")
    (tree / "rows.jsonl").write_text('{"file": "corpus/d.wav", "category": "misc"}\n')
    assert [(i.name, i.category) for i in eval_items([str(tree / "list.txt"), str(tree / "rows.jsonl")])] == [
        ("corpus/speech/a.wav", "-"), ("corpus/d.wav", "misc")]
    assert find_audio([tree / "rows.jsonl"]) == [tree / "corpus" / "d.wav"]
    assert [i.name for i in eval_items(["-"], io.StringIO(f"{tree}/corpus/d.wav\n"))] == [f"{tree}/corpus/d.wav"]


def test_encode_targets(tree):
    """A walked tree is mirrored; any other file goes to OUT/STEM; a file output takes the one
    input as it is (a .txt there is audio that fails to read, as before)."""
    (tree / "list.txt").write_text("extra/e.ogg\n")
    jobs = file_jobs.plan([str(tree / "corpus" / "speech"), str(tree / "list.txt")], "out", AUDIO_SUFFIXES, ".npy")
    assert [(j.target, j.resumable) for j in jobs] == [("out/a.npy", True), ("out/b.npy", True), ("out/e.npy", True)]
    assert file_jobs.plan([str(tree / "list.txt")], "x.npy", AUDIO_SUFFIXES, ".npy") == [
        file_jobs.FileJob(str(tree / "list.txt"), "x.npy")]
    (tree / "twice.txt").write_text("corpus/d.wav\nelsewhere/d.wav\n")
    with pytest.raises(UserError, match="two inputs would both write out/d.npy"):
        file_jobs.plan([str(tree / "twice.txt")], "out/", AUDIO_SUFFIXES, ".npy")


@pytest.mark.parametrize("make,inputs,message", [
    (None, ["nope.wav"], "^nope.wav: no such file$"),
    (None, ["nowhere/"], "^nowhere/: no such file, directory or manifest$"),
    (None, ["list.txt"], "^list.txt: no such file, directory or manifest$"),
    (None, ["*.flac"], r"^\*.flac: no file matches this pattern$"),
    (None, [], "^no inputs given$"),
    ({"empty.txt": "# nothing but a comment\n"}, ["empty.txt"], "^empty.txt: the manifest lists no files$"),
    ({"empty.csv": "path,id\n"}, ["empty.csv"], "^empty.csv: the manifest lists no files$"),
    ({"bad.csv": "name\nx.wav\n"}, ["bad.csv"], "^bad.csv: row 1 has no path .a manifest needs a 'path' column, "
                                                 "or one named audio_filepath, audio, file or filename.$"),
    ({"bad.jsonl": '{"path": "x.wav"}\n[1]\n'}, ["bad.jsonl"], "^bad.jsonl:2: each line must be a JSON object$"),
    ({"empty/notes.md": "not audio\n"}, ["empty"], "^empty: no audio files in this directory$"),
    (None, ["-"], r"^-: no paths on stdin"),
])
def test_one_error_line_each(tmp_path, monkeypatch, make, inputs, message):
    monkeypatch.chdir(tmp_path)
    for name, text in (make or {}).items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=message):
        resolve(inputs, AUDIO_SUFFIXES, "audio", io.StringIO(""))
