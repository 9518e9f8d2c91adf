"""`rvq tokenize`, `rvq export`, `rvq detokenize` on real files: shards hold exactly the codec's
codes in every format and pattern, bad files are logged and skipped, reruns skip finished shards,
changed options and a second job are refused, export of code files gives the same shards as
tokenizing their audio, worker counts and split jobs give the same bytes, and a job killed with
SIGKILL finishes byte-identical on rerun."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rvqtool.io.codes import load_codes
from rvqtool.tokens.vocab import Vocab
from tests.cli_harness import env, files_under, write_audio

GOOD = {"a": (1.0, 24000, 1), "sub/b": (0.8, 44100, 2), "sub/deep/c": (0.6, 16000, 1)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three good files, one unreadable (fails at planning), one with NaN samples (fails encoding)."""
    d = tmp_path_factory.mktemp("tok_corpus")
    for i, (name, (seconds, rate, channels)) in enumerate(GOOD.items()):
        write_audio(d / f"{name}.{'flac' if channels == 2 else 'wav'}", seconds, rate, channels, seed=i)
    (d / "bad.wav").write_bytes(np.random.default_rng(4).bytes(6000))
    nan = np.full(4800, np.nan, np.float32)
    import soundfile as sf
    sf.write(str(d / "sub" / "nan.wav"), nan, 24000, subtype="FLOAT")
    return d


@pytest.fixture(scope="module")
def reference(corpus):
    """The codes `rvq encode` makes for each good file."""
    from rvqtool import load_codec

    codec = load_codec("default", "cpu")
    return {name: codec.encode_file(next(corpus.glob(name + ".*"))) for name in GOOD}


def shard_bytes(out: Path, records: bool = False) -> dict[str, bytes]:
    """The shards' data files (and their records `shard-N.json`, which name the source paths)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.name.startswith("shard-") and (records or p.suffix != ".json")}


def documents(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]


def test_tokenize_bin_holds_the_codecs_codes(rvq, corpus, reference, tmp_path):
    res = rvq("tokenize", corpus, "-o", "out", "--shard-size", "700", cwd=tmp_path)
    assert res.rc == 1, res                      # a batch with bad files exits 1, after doing the rest
    lines = res.err_lines
    assert len(lines) == 3 and "bad.wav: not a readable audio file" in lines[0] and "nan.wav" in lines[1], res
    assert lines[2] == "tokenize: 3 files encoded into 3 shards, 0 shards already done, 2 failed " \
                       "(listed in out/failures.jsonl)", res
    out = tmp_path / "out"
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["id"], f["stage"]) for f in failures] == [("bad", "header"), ("sub/nan", "encode")]
    vocab = Vocab.load(out / "vocab.json")
    docs = documents(out)
    assert [d["id"] for d in docs] == ["a", "sub/b", "sub/deep/c"]   # sorted order, failures left out
    for d in docs:
        data = np.memmap(out / f"shard-{d['shard']:05d}.bin", dtype=np.uint16, mode="r")
        offsets = np.load(out / f"shard-{d['shard']:05d}.idx.npy")
        tokens = data[offsets[d["position"]]:offsets[d["position"] + 1]]
        assert np.array_equal(tokens, vocab.document(reference[d["id"]].codes[0]))
        assert d["length"] == reference[d["id"]].meta.length and d["n_tokens"] == len(tokens)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_documents"] == 3 and manifest["n_failed"] == 2 and manifest["dtype"] == "uint16"
    assert manifest["n_tokens"] == sum(d["n_tokens"] for d in docs)
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]

    snapshot = files_under(out)
    res = rvq("tokenize", corpus, "-o", "out", "--shard-size", "700", "-v", cwd=tmp_path)
    assert res.rc == 1 and "0 files encoded into 0 shards, 3 shards already done, 2 failed" in res.stderr, res
    shard_files = {k: v for k, v in snapshot.items() if k.startswith("shard-")}
    assert {k: v for k, v in files_under(out).items() if k.startswith("shard-")} == shard_files  # untouched

    res = rvq("tokenize", corpus, "-o", "out", "--shard-size", "700", "--pattern", "delay", cwd=tmp_path)
    assert res.rc == 1 and res.err_lines == ["error: out: holds another job (options differ: pattern was "
                                             "'flat', now 'delay'); use a new output directory, or delete "
                                             "this one to start over"], res
    res = rvq("tokenize", corpus, "-o", "other", "--n-q", "0", cwd=tmp_path)
    assert res.rc == 2 and res.err_lines == ["error: --n-q must be at least 1, got 0"], res   # a usage mistake
    with open(out / ".lock", "w") as held:            # another job holds the directory
        fcntl.flock(held, fcntl.LOCK_EX)
        res = rvq("tokenize", corpus, "-o", "out", "--shard-size", "700", cwd=tmp_path)
    assert res.rc == 1 and "another job is writing here" in res.stderr and len(res.err_lines) == 1, res


FORMATS = [("bin", "flat"), ("parquet", "delay"), ("jsonl", "level-major"), ("wds", "coarse"), ("bin", "delay")]


@pytest.mark.parametrize("fmt,pattern", FORMATS)
def test_every_format_and_pattern_round_trips(rvq, corpus, reference, tmp_path, fmt, pattern):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    extra = ["--n-q", "3"] if pattern == "coarse" else []
    extra += ["--index", "megatron", "--vocab-offset", "60000"] if (fmt, pattern) == ("bin", "delay") else []
    res = rvq("tokenize", corpus / "a.wav", corpus / "sub", "-o", "out", "-f", fmt, "-p", pattern, "--sep", *extra,
              cwd=tmp_path)
    assert res.rc == 1, res                           # nan.wav
    out = tmp_path / "out"
    vocab = Vocab.load(out / "vocab.json")
    n_q = 3 if pattern == "coarse" else 8
    ids = {d["id"]: d for d in documents(out)}
    a = str(corpus / "a")                             # a file's id: its path; in a directory: relative to it
    assert list(ids) == [a, "b", "deep/c"]
    for doc_id, name in ((a, "a"), ("b", "sub/b"), ("deep/c", "sub/deep/c")):
        res = rvq("detokenize", "out", "--id", doc_id, "-o", f"{Path(doc_id).name}.npy", cwd=tmp_path)
        assert res.rc == 0, res
        codes = load_codes(tmp_path / f"{Path(doc_id).name}.npy")
        assert np.array_equal(codes.codes, reference[name].codes[:, :n_q])
        assert codes.meta.length == reference[name].meta.length
    if fmt == "parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(out / "shard-00000.parquet")
        assert table.column("id").to_pylist() == [a, "b", "deep/c"]
        assert table.column("tokens")[0].as_py() == vocab.document(reference["a"].codes[0]).tolist()
    if fmt == "bin" and pattern == "delay":           # Megatron layout, uint32 tokens stored as int32
        from rvqtool.tokens.shards import read_megatron_index
        dtype, offsets = read_megatron_index(out / "shard-00000.idx")
        assert vocab.dtype == np.uint32 and dtype == np.int32 and offsets[-1] * 4 == (out / "shard-00000.bin").stat().st_size
    res = rvq("detokenize", "out", "--doc", "1", "-o", "b.wav", cwd=tmp_path)
    assert res.rc == 0, res
    import soundfile as sf
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.samplerate, info.frames) == (24000, reference["sub/b"].meta.length)


def test_manifest_metadata_and_stdin(rvq, corpus, tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": str(corpus / "a.wav"), "id": "utt1", "text": "hi", "spk": 7}) + "\n"
                                      + json.dumps({"path": str(corpus / "sub/b.flac"), "text": "yo"}) + "\n")
    res = rvq("tokenize", "m.jsonl", "-o", "pq", "-f", "parquet", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    import pyarrow.parquet as pq
    rows = pq.read_table(tmp_path / "pq" / "shard-00000.parquet").to_pylist()
    assert [(r["id"], r["text"], json.loads(r["metadata"])) for r in rows] == [("utt1", "hi", {"spk": 7}),
                                                                          (str(corpus / "sub/b"), "yo", {})]
    assert rows[0]["duration"] == 1.0 and rows[0]["n_frames"] == 75
    paths = f"{corpus / 'a.wav'}\n{corpus / 'sub/deep/c.wav'}\n".encode()
    res = rvq("tokenize", "-", "-o", "js", "-f", "jsonl", cwd=tmp_path, stdin=paths)
    assert res.rc == 0, res
    assert [json.loads(x)["id"] for x in (tmp_path / "js" / "shard-00000.jsonl").read_text().splitlines()] == \
        [str(corpus / "a"), str(corpus / "sub/deep/c")]


def test_crafted_ids_and_texts_stay_inside_their_files(rvq, corpus, tmp_path):
    """Ids like '../../x', '/etc/x' or 'a/b' never name a tar member (members are SHARD-POSITION), and
    texts with characters that splitlines() takes for line ends (U+2028, U+0085, a newline) leave
    documents.jsonl and a jsonl shard one line per document; an id with a line break is refused."""
    rows = [{"path": str(corpus / "a.wav"), "id": "../../x", "text": "one\u2028two\x85three\nfour"},
            {"path": str(corpus / "sub/b.flac"), "id": "/etc/x"},
            {"path": str(corpus / "sub/deep/c.wav"), "id": "a/b", "text": "\u2029"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for fmt in ("wds", "jsonl"):
        res = rvq("tokenize", "m.jsonl", "-o", fmt, "-f", fmt, cwd=tmp_path)
        assert res.rc == 0, res
        lines = (tmp_path / fmt / "documents.jsonl").read_text(encoding="utf-8").splitlines()
        assert [(json.loads(x)["id"], json.loads(x)["text"]) for x in lines] == \
            [(r["id"], r.get("text")) for r in rows]
    shard = (tmp_path / "jsonl" / "shard-00000.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in shard] == [r["id"] for r in rows]
    import tarfile
    with tarfile.open(tmp_path / "wds" / "shard-00000.tar") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert names == [f"00000-00000{i}.{ext}" for i in range(3) for ext in ("npy", "json")]
    assert sorted(p.name for p in (tmp_path / "unpacked").iterdir()) == sorted(names)
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"path": str(corpus / "a.wav"), "id": "two\nlines"}) + "\n")
    res = rvq("tokenize", "bad.jsonl", "-o", "bad", cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 1 and "'two\\nlines'" in res.stderr \
        and "line break" in res.stderr, res
    assert not (tmp_path / "bad").exists()


def test_export_of_codes_equals_tokenize_of_audio(rvq, corpus, tmp_path):
    assert rvq("encode", corpus, "-o", "codes", cwd=tmp_path).rc == 1              # bad.wav, nan.wav
    assert rvq("encode", corpus / "sub", "-o", "packed", "--format", "rvq", cwd=tmp_path).rc == 1
    for fmt in ("bin", "wds"):
        args = ["-f", fmt, "-p", "delay", "--shard-size", "900"]
        assert rvq("tokenize", corpus, "-o", f"t_{fmt}", *args, cwd=tmp_path).rc == 1
        res = rvq("export", "codes", "-o", f"e_{fmt}", *args, cwd=tmp_path)
        assert res.rc == 0 and res.stderr == "", res
        assert shard_bytes(tmp_path / f"t_{fmt}") == shard_bytes(tmp_path / f"e_{fmt}")  # records aside
        assert len(shard_bytes(tmp_path / f"t_{fmt}")) == {"bin": 6, "wds": 3}[fmt]   # 3 shards
    res = rvq("export", "packed", "-o", "e_rvq", "-f", "wds", "-p", "delay", "--shard-size", "900", cwd=tmp_path)
    assert res.rc == 0, res
    (tmp_path / "packed" / "x.npy").write_bytes(b"junk")
    res = rvq("export", "packed", "-o", "e_rvq2", cwd=tmp_path)
    assert res.rc == 1 and "x.npy" in res.err_lines[0] and "1 failed" in res.err_lines[-1], res


def test_workers_and_split_jobs_write_the_same_bytes(rvq, corpus, tmp_path):
    args = ["--shard-size", "500", "-f", "jsonl"]
    assert rvq("tokenize", corpus, "-o", "one", *args, cwd=tmp_path).rc == 1
    expected = shard_bytes(tmp_path / "one")
    assert len([n for n in expected if n.endswith(".jsonl")]) == 3
    assert rvq("tokenize", corpus, "-o", "two", *args, "--workers", "2", cwd=tmp_path).rc == 1
    assert shard_bytes(tmp_path / "two") == expected
    assert rvq("tokenize", corpus, "-o", "batched", *args, "--batch-windows", "4", cwd=tmp_path).rc == 1
    assert shard_bytes(tmp_path / "batched") == expected
    res = rvq("tokenize", corpus, "-o", "split", *args, "--shard-index", "1", "--num-shards", "2", cwd=tmp_path)
    assert res.rc in (0, 1) and "the last part to finish writes the manifest" in res.stderr, res   # 1 when nan.wav is in its shards
    assert not (tmp_path / "split" / "manifest.json").exists()
    res = rvq("tokenize", corpus, "-o", "split", *args, "--shard-index", "0", "--num-shards", "2", cwd=tmp_path)
    assert res.rc == 1 and "the last part" not in res.stderr, res     # the last part to finish writes the manifest
    assert shard_bytes(tmp_path / "split") == expected
    res = rvq("tokenize", corpus, "-o", "split", *args, cwd=tmp_path)    # the unsplit command: nothing left to do
    assert res.rc == 1 and "0 files encoded into 0 shards, 3 shards already done" in res.stderr, res
    for name in ("manifest.json", "documents.jsonl", "failures.jsonl"):
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_sigkill_then_rerun_gives_identical_shards(rvq, tmp_path):
    """A real `rvq tokenize` process, killed with SIGKILL once some shards are done and others
    half-written, then run again, ends with exactly the shards of an uninterrupted run."""
    corpus = tmp_path / "corpus"
    for i in range(12):
        write_audio(corpus / f"{i:02d}.wav", seconds=3.0, seed=i)
    args = ["tokenize", str(corpus), "-o", "out", "--shard-size", "2000"]   # one 3 s file per shard
    assert rvq(*args, cwd=tmp_path / "ref").rc == 0 if (tmp_path / "ref").mkdir() is None else False
    expected = shard_bytes(tmp_path / "ref" / "out", records=True)
    proc = subprocess.Popen([sys.executable, "-m", "rvqtool.cli", *args], cwd=tmp_path, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("shard-00002.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists()
    done_before = sorted(p.name for p in out.glob("shard-*.json"))
    assert 3 <= len(done_before) < 12
    res = rvq(*args, cwd=tmp_path)
    assert res.rc == 0, res
    assert shard_bytes(out, records=True) == expected
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    assert [d["id"] for d in documents(out)] == [f"{i:02d}" for i in range(12)]


def test_bad_invocations(rvq, corpus, tmp_path):
    cases = [  # usage mistakes exit 2, bad inputs 1
        (["tokenize", corpus, "-o", "x", "-f", "csv"], "--format must be one of", 2),
        (["tokenize", corpus, "-o", "x", "-p", "coarse"], "--pattern coarse needs --n-q", 2),
        (["tokenize", corpus, "-o", "x", "--n-q", "9"], "--n-q must be between 1 and 8", 2),
        (["tokenize", corpus, "-o", "x", "--shard-index", "2", "--num-shards", "2"], "--shard-index must be in", 2),
        (["tokenize", corpus, "-o", "x", "--shard-index", "0"], "go together", 2),
        (["tokenize", "nowhere/", "-o", "x"], "no such file, directory or manifest", 1),
        (["detokenize", "nowhere", "--doc", "0", "-o", "x.wav"], "no manifest.json", 1),
    ]
    for argv, message, rc in cases:
        res = rvq(*argv, cwd=tmp_path)
        assert res.rc == rc and len(res.err_lines) == 1 and message in res.stderr, res
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").glob("shard-*"))


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_batched_windows_give_the_same_codes(corpus, batch):
    """The GPU path (windows bucketed by length, encoded `batch` at a time), run on CPU with small
    windows so that files have many: the same codes and metadata as `encode_file`, failures kept."""
    import torch

    from rvqtool import load_codec
    from rvqtool.errors import Failure
    from rvqtool.tokens.encoders import BatchedAudioEncoder

    torch.set_num_threads(1)
    codec = load_codec("default", "cpu", chunk_seconds=0.2)
    paths = [str(next(corpus.glob(name + ".*"))) for name in GOOD] + [str(corpus / "bad.wav")]
    got = BatchedAudioEncoder(codec, 8, batch).encode_group(paths)
    for path, codes in zip(paths[:-1], got):
        expected = codec.encode_file(path)
        assert np.array_equal(codes.codes, expected.codes) and codes.meta == expected.meta
    assert isinstance(got[-1], Failure) and got[-1].path == paths[-1] and "bad.wav" in got[-1].reason
