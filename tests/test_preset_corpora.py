"""`rvq tokenize/export --preset NAME [--tokenizer tokenizer.json]` and `rvq detokenize` of what
they write: for every preset, code files -> shards holding exactly the preset's ids -> the same
codes again; whole training sequences with a tokenizer built here; the refusals (layout flags
beside a preset, codes of another model, a changed tokenizer on resume); and a tokenize run of
audio through a small model named like Mimi, back to audio.

Code files are written with the metadata of the model each LM sits on (SNAC 24 kHz, Mimi, XCodec2,
NeuCodec) and random codes: the token layer reads nothing else of the model."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tokenizers")

from rvqtool.errors import UsageError, UserError
from rvqtool.io.codes import Codes, CodesMeta, load_codes, save_codes
from rvqtool.tokens import TokenOptions, export
from rvqtool.tokens.presets import make_preset
from rvqtool.tokens.reader import TokenDir
from tests.cli_harness import write_audio
from tests.test_presets import LLASA_MARKERS, csm_tokenizer, neutts_tokenizer, word_level

# (model, sample rate, hop, rows in the code file, codebook size) of the codes each LM takes;
# the Mimi files hold all 32 levels, so moshi's 8 are cut from them
MODELS = {"orpheus": ("snac_24khz", 24000, 2048, 7, 4096), "csm": ("mimi", 24000, 1920, 32, 2048),
          "moshi": ("mimi", 24000, 1920, 32, 2048), "llasa": ("xcodec2", 16000, 320, 1, 65536),
          "neutts": ("neucodec", 16000, 320, 1, 65536)}
TEXTS = ["hello world", "hello", "world hello hello"]
METADATA = {"speaker": "tara", "alignments": [["hello", [0.0, 0.1], "SPEAKER_MAIN"]]}   # every file's, in corpus()


def code_file(path: Path, name: str, frames: int, seed: int, channels: int = 1) -> np.ndarray:
    """A code file of `name`'s model: random codes [channels, rows, frames], the largest code in frame 0."""
    model, rate, hop, rows, size = MODELS[name]
    codes = np.random.default_rng(seed).integers(0, size, (channels, rows, frames))
    codes[..., 0] = size - 1
    meta = CodesMeta(model, "ab" * 32, rate, rate / hop, hop, rows, size, frames * hop - hop // 2, channels,
                     "split" if channels > 1 else "mono", 44100)
    save_codes(Codes(codes, meta), path)
    return codes


def corpus(root: Path, name: str, channels: int = 1, texts: list[str | None] = TEXTS) -> list[np.ndarray]:
    """Code files 0..n-1 of `name`'s model and a manifest `codes.jsonl` with their text and metadata."""
    root.mkdir(parents=True, exist_ok=True)
    lines, codes = [], []
    for i, text in enumerate(texts):
        codes.append(code_file(root / f"{i}.npy", name, 3 + 2 * i, seed=i, channels=channels))
        row = {"path": f"{i}.npy", **METADATA}
        lines.append(json.dumps({**row, "text": text} if text is not None else row))
    (root / "codes.jsonl").write_text("\n".join(lines) + "\n")
    return codes


def tokenizer_file(path: Path, name: str) -> Path:
    tokenizer = {"orpheus": lambda: word_level({"hello": 1, "world": 2, "tara": 3, ":": 4}),
                 "csm": csm_tokenizer,
                 "moshi": lambda: word_level({"hello": 10}),
                 "llasa": lambda: word_level({"hello": 1, "world": 2, **LLASA_MARKERS}, list(LLASA_MARKERS)),
                 "neutts": neutts_tokenizer}[name]()
    tokenizer.save(str(path))
    return path


def documents(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]




# ---- every preset: shards hold its ids, detokenize gives the codes back ------------------------------
ROUND_TRIPS = [("orpheus", "bin", 1), ("csm", "parquet", 1), ("moshi", "jsonl", 2), ("moshi", "parquet", 1),
               ("llasa", "wds", 1), ("neutts", "bin", 1)]


@pytest.mark.parametrize("name,fmt,channels", ROUND_TRIPS)
def test_export_then_detokenize_gives_the_codes_back(rvq, tmp_path, name, fmt, channels):
    codes = corpus(tmp_path / "c", name, channels)
    extra = ["--index", "megatron"] if name == "neutts" else []
    res = rvq("export", "c/codes.jsonl", "-o", "out", "--preset", name, "-f", fmt, "--shard-size", "60", *extra,
              cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    out, preset = tmp_path / "out", make_preset(name)
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["format"] == "rvqtool-preset-vocab" and vocab["preset"] == preset.describe()
    assert vocab["n_q"] == preset.levels and vocab["dtype"] == preset.dtype.name and vocab["channels"] == channels
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pattern"] == f"preset:{name}" and manifest["dtype"] == preset.dtype.name
    assert len(manifest["shards"]) > 1 or name in ("llasa", "neutts")        # --shard-size cuts by the preset's lengths
    reader = TokenDir(out)
    for i, (entry, original) in enumerate(zip(documents(out), codes)):
        doc = preset.document(original[:, :preset.rows], TEXTS[i], METADATA)
        tokens = reader.tokens(entry)
        stored = np.dtype(np.int32) if extra else preset.dtype              # Megatron has no uint32
        assert tokens.dtype == stored and np.array_equal(tokens, doc.tokens), (name, i)
        assert entry["layout"] == doc.metadata and entry["text"] == TEXTS[i]
        assert entry["metadata"] == METADATA
        assert rvq("detokenize", "out", "--doc", i, "-o", f"back{i}.npy", cwd=tmp_path).rc == 0
        back = load_codes(tmp_path / f"back{i}.npy")
        assert np.array_equal(back.codes, original[:, :preset.rows]), (name, i)
        source = load_codes(tmp_path / "c" / f"{i}.npy").meta
        assert (back.meta.length, back.meta.model, back.meta.channels) == (source.length, source.model, channels)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out / "shard-00000.parquet")
        assert str(table.schema.field("tokens").type.value_type) == {"uint32": "uint32", "int32": "int32"}[preset.dtype.name]
        assert json.loads(table.column("layout")[0].as_py()) == documents(out)[0]["layout"]


def test_whole_sequences_with_a_tokenizer(rvq, tmp_path):
    codes = corpus(tmp_path / "c", "orpheus")
    tokenizer_file(tmp_path / "tokenizer.json", "orpheus")
    res = rvq("export", "c/codes.jsonl", "-o", "out", "--preset", "orpheus", "--tokenizer", "tokenizer.json",
              "-f", "jsonl", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    preset = make_preset("orpheus", tmp_path / "tokenizer.json")
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert vocab["preset"]["document"] == "sequence" and vocab["preset"] == preset.describe()
    rows = [json.loads(line) for line in (tmp_path / "out" / "shard-00000.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        expected = preset.document(codes[i], TEXTS[i], {"speaker": "tara"}).tokens
        assert row["tokens"] == expected.tolist() and row["text"] == TEXTS[i]
        assert row["tokens"][:4] == [128259, 128000, 3, 4]                  # human turn: "tara: hello ..."
    assert rvq("detokenize", "out", "--doc", 2, "-o", "back.npy", cwd=tmp_path).rc == 0
    assert np.array_equal(load_codes(tmp_path / "back.npy").codes, codes[2])
    # an LM's sample: bare audio ids of the layout, read back through vocab.json
    np.save(tmp_path / "sample.npy", np.array(rows[1]["tokens"]))
    assert rvq("detokenize", "out", "--tokens", "sample.npy", "-o", "sample.npy", cwd=tmp_path).rc == 0
    assert np.array_equal(load_codes(tmp_path / "sample.npy").codes, codes[1])


def test_a_file_without_text_fails_alone(rvq, tmp_path):
    corpus(tmp_path / "c", "llasa", texts=["hello", None, "world"])
    tokenizer_file(tmp_path / "tokenizer.json", "llasa")
    res = rvq("export", "c/codes.jsonl", "-o", "out", "--preset", "llasa", "--tokenizer", "tokenizer.json",
              cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 2, res
    assert res.err_lines[0] == "error: c/1.npy: --preset llasa with a tokenizer needs " \
                               "each file's text (a manifest's text column)", res
    assert [d["id"] for d in documents(tmp_path / "out")] == ["0", "2"]


def test_neutts_sequences_map_back_through_their_tokenizer(rvq, tmp_path):
    codes = corpus(tmp_path / "c", "neutts", texts=["h ə l oʊ"] * 2)
    tokenizer_file(tmp_path / "tokenizer.json", "neutts")
    res = rvq("export", "c/codes.jsonl", "-o", "out", "--preset", "neutts", "--tokenizer", "tokenizer.json",
              cwd=tmp_path)
    assert res.rc == 0, res
    res = rvq("detokenize", "out", "--doc", 1, "-o", "back.npy", cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 1 and "pass --tokenizer" in res.stderr, res
    other = tmp_path / "other.json"
    neutts_tokenizer(base=2000).save(str(other))
    res = rvq("detokenize", "out", "--doc", 1, "--tokenizer", other, "-o", "back.npy", cwd=tmp_path)
    assert res.rc == 1 and "not the tokenizer" in res.err_lines[0] and len(res.err_lines) == 1, res
    res = rvq("detokenize", "out", "--doc", 1, "--tokenizer", "tokenizer.json", "-o", "back.npy", cwd=tmp_path)
    assert res.rc == 0, res
    assert np.array_equal(load_codes(tmp_path / "back.npy").codes, codes[1])


# ---- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--pattern", "delay"], ["--pattern", "flat"], ["--bos"], ["--no-eos"],
                                   ["--sep"], ["--vocab-offset", "0"]])
def test_layout_flags_beside_a_preset_are_a_usage_error(rvq, tmp_path, flags):
    corpus(tmp_path / "c", "csm", texts=["a"])
    res = rvq("export", "c", "-o", "out", "--preset", "csm", *flags, cwd=tmp_path)
    assert res.rc == 2 and len(res.err_lines) == 1 and "--preset csm sets the token layout itself: drop" \
        in res.err_lines[0], res
    assert not (tmp_path / "out").exists()


def test_usage_mistakes(rvq, tmp_path):
    corpus(tmp_path / "c", "csm", texts=["a"])
    for args, message in [(["--preset", "gpt"], "--preset must be one of orpheus, csm, moshi, llasa, neutts, got gpt"),
                          (["--tokenizer", "t.json"], "--tokenizer goes with --preset NAME (the LM whose tokenizer it is)")]:
        res = rvq("export", "c", "-o", "out", *args, cwd=tmp_path)
        assert res.rc == 2 and res.err_lines == [f"error: {message}"], res
    res = rvq("export", "c", "-o", "out", "--preset", "csm", "--tokenizer", "missing.json", cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 1 and "no such file" in res.err_lines[0], res


def test_codes_of_another_model_are_refused_before_any_work(rvq, tmp_path):
    write_audio(tmp_path / "a.wav", 0.2, 24000, seed=1)
    assert rvq("encode", "a.wav", "-o", "a.npy", cwd=tmp_path).rc == 0       # the shipped default model
    for command, source in (("export", "a.npy"), ("tokenize", "a.wav")):
        res = rvq(command, source, "-o", "out", "--preset", "moshi", cwd=tmp_path)
        assert res.rc == 1 and len(res.err_lines) == 1, res
        assert res.err_lines[0].startswith("error: --preset moshi (Moshi) needs Mimi codes (8 levels of 2048 codes)")
        assert "model default" in res.err_lines[0] and not (tmp_path / "out").exists()
    corpus(tmp_path / "c", "moshi", texts=["a"])
    res = rvq("export", "c", "-o", "out", "--preset", "moshi", "--n-q", "4", cwd=tmp_path)
    assert res.rc == 1 and "these codes have 4 levels" in res.err_lines[0], res
    eight = load_codes(tmp_path / "c" / "0.npy")
    save_codes(Codes(eight.codes[:, :8], dataclasses.replace(eight.meta, n_q=8)), tmp_path / "eight.npy")
    res = rvq("export", "eight.npy", "-o", "out", "--preset", "csm", cwd=tmp_path)
    assert res.rc == 1 and res.err_lines[0].endswith("these codes hold 8 levels, not 32"), res
    corpus(tmp_path / "s", "orpheus", texts=["a"])
    res = rvq("export", "s", "-o", "out", "--preset", "csm", cwd=tmp_path)
    assert res.rc == 1 and "model snac_24khz" in res.err_lines[0], res


def test_api_takes_the_same_options(tmp_path, monkeypatch):
    corpus(tmp_path / "c", "csm")
    tokenizer_file(tmp_path / "tok.json", "csm")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--preset csm sets the token layout itself: drop --pattern, --sep"):
        export(["c/codes.jsonl"], "out", TokenOptions(preset="csm", pattern="delay", sep=True))
    summary = export(["c/codes.jsonl"], "out", TokenOptions(preset="csm", tokenizer="tok.json", format="wds"))
    assert summary.complete and summary.files_done == 3 and not summary.failures
    entry = TokenDir(tmp_path / "out").find(doc_id="1")
    expected = make_preset("csm", tmp_path / "tok.json").document(np.zeros((1, 32, 5), np.int64), "hello",
                                                                  {"speaker": "tara"})
    assert entry["layout"] == expected.metadata and entry["layout"]["text_frames"] > 2
    with pytest.raises(UserError, match="holds another job"):
        export(["c/codes.jsonl"], "out", TokenOptions(preset="csm", format="wds"))


# ---- resume: the same job goes on, another is refused ------------------------------------------------
def test_a_changed_tokenizer_is_another_job(rvq, tmp_path):
    corpus(tmp_path / "c", "orpheus")
    tokenizer_file(tmp_path / "tokenizer.json", "orpheus")
    args = ("export", "c/codes.jsonl", "-o", "out", "--preset", "orpheus", "--shard-size", "60", "-f", "jsonl")
    assert rvq(*args, "--tokenizer", "tokenizer.json", cwd=tmp_path).rc == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    moved = tmp_path / "elsewhere" / "tokenizer.json"
    moved.parent.mkdir()
    shutil.copy(tmp_path / "tokenizer.json", moved)
    res = rvq(*args, "--tokenizer", moved, "-v", cwd=tmp_path)                # the same tokenizer, moved: the same job
    assert res.rc == 0 and "0 files encoded into 0 shards" in res.stderr, res
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    word_level({"hello": 1, "world": 5, "tara": 3, ":": 4}).save(str(tmp_path / "other.json"))
    for extra in (["--tokenizer", "other.json"], []):
        res = rvq(*args, *extra, cwd=tmp_path)
        assert res.rc == 1 and len(res.err_lines) == 1, (extra, res)
        assert "holds another job (the tokenizer differs: sha256 " in res.err_lines[0], (extra, res)
    assert res.err_lines[0].endswith("none now); use a new output directory, or delete this one to start over")
    res = rvq("export", "c/codes.jsonl", "-o", "out", "--shard-size", "60", "-f", "jsonl", cwd=tmp_path)
    assert res.rc == 1 and "options differ: preset was 'orpheus', now None" in res.err_lines[0], res


def test_runs_without_a_preset_record_no_preset(tmp_path, monkeypatch):
    corpus(tmp_path / "c", "csm", texts=["a"])
    monkeypatch.chdir(tmp_path)
    export(["c"], "out", TokenOptions(format="jsonl"))
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert "preset" not in plan["options"] and "tokenizer" not in plan["options"]
    assert json.loads((tmp_path / "out" / "vocab.json").read_text())["format"] == "rvqtool-vocab"
    assert "layout" not in documents(tmp_path / "out")[0]


# ---- tokenize: audio through a model named like Mimi, back to audio -----------------------------------
@pytest.fixture(scope="module")
def mimi_like(tmp_path_factory) -> Path:
    """A small model of our own family with Mimi's code shape (32 levels of 2048), named mimi-tiny:
    what the moshi and csm presets check (the layout never looks inside the model)."""
    from rvqtool.checkpoint import save_model
    from rvqtool.config import CodecConfig
    from rvqtool.model.native import NativeCodecModel

    torch.manual_seed(0)
    model = NativeCodecModel(CodecConfig(encoder_filters=4, decoder_filters=4, dimension=8, n_quantizers=32,
                                   codebook_size=2048))
    with torch.no_grad():               # random codebooks, shrinking level by level as residuals do
        model.quantizer.embed.copy_(torch.randn(32, 2048, 8) * 0.5 ** torch.arange(32.0)[:, None, None])
    model.quantizer.initialized.fill_(True)
    return save_model(model, tmp_path_factory.mktemp("model") / "mimi-tiny.safetensors", "mimi-tiny")


def test_tokenize_with_a_preset_then_back_to_audio(rvq, tmp_path, mimi_like):
    write_audio(tmp_path / "a.wav", 0.3, 24000, seed=1)
    write_audio(tmp_path / "b.wav", 0.2, 16000, seed=2)
    res = rvq("tokenize", "a.wav", "b.wav", "-o", "out", "--preset", "moshi", "--model", mimi_like, cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    assert rvq("encode", "a.wav", "-o", "a.npy", "--model", mimi_like, "--n-q", "8", cwd=tmp_path).rc == 0
    direct = load_codes(tmp_path / "a.npy")
    assert direct.codes.shape[:2] == (1, 8) and len(np.unique(direct.codes)) > 10     # codes that vary
    assert rvq("detokenize", "out", "--id", "a", "-o", "back.npy", cwd=tmp_path).rc == 0
    assert np.array_equal(load_codes(tmp_path / "back.npy").codes, direct.codes)
    res = rvq("detokenize", "out", "--id", "a", "-o", "back.wav", "--model", mimi_like, cwd=tmp_path)
    assert res.rc == 0, res
    assert rvq("decode", "a.npy", "-o", "direct.wav", "--model", mimi_like, cwd=tmp_path).rc == 0
    assert (tmp_path / "back.wav").read_bytes() == (tmp_path / "direct.wav").read_bytes()
