"""`rvq tokenize/export --n-q N` counts SNAC's levels, as encode/decode do: the stream holds the
rows of the first N levels (1/2/3 at 24 kHz -> 1/3/7 rows) in the file's depth-first order, each
row its own offset, and `rvq detokenize` gives those rows back as the codes `rvq encode --n-q N`
writes. Code files carry SNAC 24 kHz metadata and random codes (export reads nothing else of the
model); tokenize runs a small random SNAC (tests/test_wired_models.py's)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rvqtool.errors import UsageError, UserError
from rvqtool.io.codes import Codes, CodesMeta, load_codes, save_codes
from rvqtool.tokens import TokenOptions, export, tokenize
from rvqtool.tokens.levels import level_multiples, rows_of_levels
from rvqtool.tokens.reader import TokenDir
from tests.cli_harness import write_audio

SIZE, HOP = 4096, 2048
ROWS = {1: [0], 2: [0, 1, 4], 3: [0, 1, 2, 3, 4, 5, 6]}     # of the 7 rows [c0, c1, c2, c2, c1, c2, c2]


def snac_meta(levels: int, rows: int, frames: int) -> CodesMeta:
    return CodesMeta("snac_24khz", "cd" * 32, 24000, 24000 / HOP, HOP, rows, SIZE, frames * HOP - 100, 1, "mono",
                     24000, levels=levels)


def code_file(path: Path, levels: int, frames: int, seed: int) -> np.ndarray:
    """A SNAC 24 kHz code file of `levels` levels: random rows [1, rows, frames]."""
    rows = len(ROWS[levels])
    codes = np.random.default_rng(seed).integers(0, SIZE, (1, rows, frames))
    save_codes(Codes(codes, snac_meta(levels, rows, frames)), path)
    return codes


def documents(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_export_n_q_counts_levels_and_detokenize_gives_their_rows(rvq, tmp_path, levels):
    originals = [code_file(tmp_path / "c" / f"{i}.npy", 3, 4 + i, seed=i) for i in range(2)]
    export([tmp_path / "c"], tmp_path / "out", TokenOptions(n_q=levels, bos=False, eos=False))
    rows = ROWS[levels]
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert (vocab["n_q"], vocab["levels"], vocab["rows"]) == (len(rows), levels, len(rows))
    assert vocab["token_formula"] == "offset + row * codebook_size + code"
    assert vocab["audio_tokens"] == [0, len(rows) * SIZE]
    assert (vocab["codes_meta"]["n_q"], vocab["codes_meta"]["levels"]) == (len(rows), levels)
    reader = TokenDir(tmp_path / "out")
    for i, (entry, original) in enumerate(zip(sorted(documents(tmp_path / "out"), key=lambda d: d["id"]), originals)):
        kept = original[0, rows]                                    # the file's rows of those levels, in order
        flat = (kept + np.arange(len(rows))[:, None] * SIZE).T.reshape(-1)   # frame-major, a row per offset
        assert np.array_equal(reader.tokens(entry), flat), (levels, i)
        res = rvq("detokenize", "out", "--doc", entry["doc"], "-o", f"back{i}.npy", cwd=tmp_path)
        assert res.rc == 0, res
        back = load_codes(tmp_path / f"back{i}.npy")
        assert np.array_equal(back.codes, kept[None]), (levels, i)
        assert (back.meta.n_q, back.meta.levels, back.meta.model) == (len(rows), levels, "snac_24khz")


def test_all_levels_by_default_in_orpheus_order(tmp_path):
    original = code_file(tmp_path / "c" / "0.npy", 3, 5, seed=0)
    export([tmp_path / "c"], tmp_path / "out", TokenOptions(bos=False, eos=False))
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert (vocab["n_q"], vocab["levels"]) == (7, 3)
    tokens = TokenDir(tmp_path / "out").tokens(documents(tmp_path / "out")[0])
    assert np.array_equal(tokens.reshape(5, 7) % SIZE, original[0].T)          # Orpheus's 7 per frame
    assert np.array_equal(tokens.reshape(5, 7) // SIZE, np.tile(np.arange(7), (5, 1)))


def test_files_of_more_levels_give_the_rows_of_fewer(tmp_path):
    two = code_file(tmp_path / "c" / "0.npy", 2, 4, seed=0)        # the first file: 2 levels, 3 rows
    three = code_file(tmp_path / "c" / "1.npy", 3, 4, seed=1)
    export([tmp_path / "c"], tmp_path / "out", TokenOptions(n_q=2, pattern="level-major", bos=False, eos=False))
    reader, docs = TokenDir(tmp_path / "out"), documents(tmp_path / "out")
    for entry, original in zip(docs, (two[0], three[0, ROWS[2]])):
        assert np.array_equal(reader.tokens(entry), (original + np.arange(3)[:, None] * SIZE).reshape(-1))


def test_too_few_or_too_many_levels_are_refused(tmp_path):
    code_file(tmp_path / "c" / "0.npy", 3, 4, seed=0)
    code_file(tmp_path / "c" / "1.npy", 2, 4, seed=1)
    summary = export([tmp_path / "c"], tmp_path / "out", TokenOptions(n_q=3))
    assert summary.files_done == 1 and len(summary.failures) == 1
    assert summary.failures[0].reason.endswith("1.npy: 2 levels, fewer than the 3 asked for")
    with pytest.raises(UsageError, match="--n-q must be between 1 and 3, got 4"):
        export([tmp_path / "c"], tmp_path / "out4", TokenOptions(n_q=4))


def test_rows_per_level_read_off_the_file_or_refused():
    assert level_multiples(snac_meta(3, 7, 1)) == (1, 2, 4)
    assert level_multiples(snac_meta(4, 15, 1)) == (1, 2, 4, 8)          # 32/44 kHz
    assert rows_of_levels(snac_meta(4, 15, 1), 3) == [0, 1, 2, 5, 8, 9, 12]   # depth first
    assert rows_of_levels(CodesMeta("x", "ab" * 32, 24000, 75.0, 320, 8, 1024, 320, 1, "mono", 24000), 3) == [0, 1, 2]
    with pytest.raises(UserError, match="13 rows of 3 levels, not the 7"):   # strides 8/2/1 (or 9/3/1)
        level_multiples(snac_meta(3, 13, 1))


def test_codes_of_other_strides_export_whole_or_not_at_all(tmp_path):
    codes = np.random.default_rng(0).integers(0, SIZE, (1, 13, 4))        # strides 8/2/1: 1 + 4 + 8 rows
    save_codes(Codes(codes, snac_meta(3, 13, 4)), tmp_path / "c" / "0.npy")
    export([tmp_path / "c"], tmp_path / "out", TokenOptions(bos=False, eos=False))
    tokens = TokenDir(tmp_path / "out").tokens(documents(tmp_path / "out")[0])
    assert np.array_equal(tokens % SIZE, codes[0].T.reshape(-1))
    with pytest.raises(UserError, match="pass --n-q 3"):
        export([tmp_path / "c"], tmp_path / "out2", TokenOptions(n_q=2))


@pytest.fixture(scope="module")
def snac_model(tmp_path_factory) -> str:
    from tests.test_snac import import_snac, snac_folder
    from tests.test_wired_models import SMALL_24KHZ

    import_snac()
    torch.set_num_threads(1)
    _, folder, _ = snac_folder(tmp_path_factory.mktemp("snac"), SMALL_24KHZ, seconds=1.0)
    return f"snac_24khz:{folder}"


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_tokenize_n_q_counts_levels(tmp_path, snac_model, levels):
    from rvqtool.codec import load_codec

    wav = write_audio(tmp_path / "a" / "talk.wav", seconds=0.5)
    tokenize([tmp_path / "a"], tmp_path / "out", TokenOptions(n_q=levels, bos=False, eos=False), model=snac_model,
             device="cpu")
    expected = load_codec(snac_model, "cpu").encode_file(str(wav), n_q=levels)
    rows = len(ROWS[levels])
    assert expected.codes.shape[1] == rows
    tokens = TokenDir(tmp_path / "out").tokens(documents(tmp_path / "out")[0])
    assert np.array_equal(tokens, (expected.codes[0] + np.arange(rows)[:, None] * SIZE).T.reshape(-1))
    assert json.loads((tmp_path / "out" / "vocab.json").read_text())["levels"] == levels


def test_tokenize_with_the_orpheus_preset_encodes_all_three_levels(tmp_path, snac_model):
    from rvqtool.codec import load_codec
    from rvqtool.tokens.presets import make_preset

    pytest.importorskip("tokenizers")
    wav = write_audio(tmp_path / "a" / "talk.wav", seconds=0.5)
    tokenize([tmp_path / "a"], tmp_path / "out", TokenOptions(preset="orpheus"), model=snac_model, device="cpu")
    expected = load_codec(snac_model, "cpu").encode_file(str(wav))
    tokens = TokenDir(tmp_path / "out").tokens(documents(tmp_path / "out")[0])
    assert np.array_equal(tokens, make_preset("orpheus").document(expected.codes).tokens)
