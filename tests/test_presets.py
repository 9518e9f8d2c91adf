"""Token presets for audio LMs, without a model: the exact ids of a hand-checked example per
preset (written from each LM's own data code, cited in rvqtool/tokens/presets/), whole training
sequences with a small tokenizer built here (its special tokens at the LM's ids), round trips
tokens -> codes, and the refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from rvqtool.errors import UsageError, UserError
from rvqtool.tokens.presets import PRESETS, make_preset
from rvqtool.tokens.presets import csm, moshi

MODELS = {"orpheus": "snac_24khz", "csm": "mimi", "moshi": "mimi", "llasa": "xcodec2", "neutts": "neucodec"}


def word_level(vocab: dict[str, int], added: list[str] = ()) -> Tokenizer:
    """A word-level tokenizer with chosen ids; `added` (already in vocab) become added tokens, so
    the tokenizer keeps them whole inside a string, as the LMs' tokenizers do their markers."""
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **vocab}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_tokens(list(added))
    return tokenizer


def random_codes(name: str, frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    preset = PRESETS[name]
    return np.random.default_rng(seed).integers(0, preset.codebook_size, (channels, preset.rows, frames))


# ---- orpheus ------------------------------------------------------------------------------------
def orpheus_notebook_ids(c0, c1, c2) -> list[int]:
    """unsloth nb/Orpheus_(3B)-TTS.ipynb tokenise_audio, from SNAC's three levels."""
    ids = []
    for i in range(len(c0)):
        ids += [c0[i] + 128266, c1[2 * i] + 128266 + 4096, c2[4 * i] + 128266 + 2 * 4096,
                c2[4 * i + 1] + 128266 + 3 * 4096, c1[2 * i + 1] + 128266 + 4 * 4096,
                c2[4 * i + 2] + 128266 + 5 * 4096, c2[4 * i + 3] + 128266 + 6 * 4096]
    return ids


def orpheus_decoder_levels(ids: list[int]):
    """Orpheus-TTS decoder.py: turn_token_into_id, then convert_to_audio's grouping of 7."""
    codes = [n - 128256 - 10 - (i % 7) * 4096 for i, n in enumerate(ids)]
    c0, c1, c2 = [], [], []
    for j in range(len(codes) // 7):
        f = codes[7 * j:7 * j + 7]
        c0 += [f[0]]
        c1 += [f[1], f[4]]
        c2 += [f[2], f[3], f[5], f[6]]
    return c0, c1, c2


def test_orpheus_exact_ids():
    c0, c1, c2 = [5, 4095], [7, 9, 0, 1], [1, 2, 3, 4, 10, 11, 12, 13]
    rows = np.array([[c0[j], c1[2 * j], c2[4 * j], c2[4 * j + 1], c1[2 * j + 1], c2[4 * j + 2], c2[4 * j + 3]]
                     for j in range(2)]).T[None]                            # our SNAC code files: [1, 7, T]
    doc = make_preset("orpheus").document(rows)
    audio = doc.tokens[2:-2].tolist()
    assert audio[:7] == [128271, 132369, 136459, 140556, 144659, 148749, 152846]
    assert audio == orpheus_notebook_ids(c0, c1, c2)
    assert orpheus_decoder_levels(audio) == (c0, c1, c2)
    assert doc.tokens[:2].tolist() == [128261, 128257] and doc.tokens[-2:].tolist() == [128258, 128262]


def test_orpheus_sequence():
    tokenizer = word_level({"hello": 1, "world": 2, "tara": 3, ":": 4})
    codes = random_codes("orpheus", 3)
    doc = make_preset("orpheus", tokenizer).document(codes, "hello world", {"speaker": "tara"})
    audio = make_preset("orpheus").document(codes).tokens
    assert doc.tokens.tolist() == [128259, 128000, 3, 4, 1, 2, 128009, 128260, *audio.tolist()]
    plain = make_preset("orpheus", tokenizer).document(codes, "hello world")
    assert plain.tokens[:6].tolist() == [128259, 128000, 1, 2, 128009, 128260]


# ---- csm ----------------------------------------------------------------------------------------
def csm_tokenizer() -> Tokenizer:
    return word_level({"[": 5, "0": 6, "]": 7, "hello": 8, "2": 9, "<|begin_of_text|>": 128000,
                       "<|end_of_text|>": 128001}, ["<|begin_of_text|>", "<|end_of_text|>"])


def test_csm_exact_frames_and_masks():
    codes = np.arange(64).reshape(1, 32, 2) * 31 % 2048                      # codebook k, frame t
    doc = make_preset("csm", csm_tokenizer()).document(codes, "hello")
    frames = doc.tokens.reshape(-1, 33)
    # Sesame's generator: text frames of "[0]hello" between BOS and EOS, in column 32 only
    text = [128000, 5, 6, 7, 8, 128001]
    assert doc.metadata == {"frame_width": 33, "text_frames": len(text)}
    assert frames[:6, 32].tolist() == text and not frames[:6, :32].any()
    # then one frame per Mimi frame: the 32 codes, text column 0; then the EOS frame of zeros
    assert frames[6, :32].tolist() == codes[0, :, 0].tolist() and frames[7, :32].tolist() == codes[0, :, 1].tolist()
    assert not frames[6:, 32].any() and not frames[8].any() and len(frames) == 9
    mask = csm.masks(6, 9)
    assert mask[:6].sum(1).tolist() == [1] * 6 and mask[:6, 32].all()
    assert mask[6:, :32].all() and not mask[6:, 32].any()
    speaker = make_preset("csm", csm_tokenizer()).document(codes, "hello", {"speaker": 2})
    assert speaker.tokens.reshape(-1, 33)[:6, 32].tolist() == [128000, 5, 9, 7, 8, 128001]
    segment = make_preset("csm").document(codes)
    assert np.array_equal(segment.tokens, doc.tokens[6 * 33:]) and segment.metadata["text_frames"] == 0


# ---- moshi --------------------------------------------------------------------------------------
MOSHI_VOCAB = {"hi": 10, "a": 11, "-": 12, "b": 13, "c": 14, "z": 15, "there": 16}
MOSHI_ALIGNMENTS = [["hi", [0.0, 0.2], "SPEAKER_MAIN"],
                    ["there", [0.1, 0.3], "SPEAKER_OTHER"],       # not the main speaker: dropped
                    ["a-b", [0.4, 0.6], "SPEAKER_MAIN"],          # 3 ids from step 5 (0.4 x 12.5)
                    ["c", [0.5, 0.7], "SPEAKER_MAIN"],            # step 6: replaces a-b's pending ids
                    ["b", [0.7, 0.7], "SPEAKER_MAIN"],            # no duration: dropped
                    ["z", [0.96, 1.0], "SPEAKER_MAIN"]]           # step 12, past the end: marks step 11


def test_moshi_text_stream_exact():
    codes = random_codes("moshi", 12, channels=2)
    doc = make_preset("moshi", word_level(MOSHI_VOCAB)).document(codes, None, {"alignments": MOSHI_ALIGNMENTS})
    steps = doc.tokens.reshape(12, 17)
    # moshi-finetune's Interleaver: padding 3, the step before a word 0 (end of padding), ids from a word's start
    assert steps[:, 0].tolist() == [10, 3, 3, 3, 0, 11, 14, 3, 3, 3, 3, 0]
    assert doc.metadata == {"streams": 17, "text_stream": "aligned"}
    # then Moshi's 8 levels (left channel), the user's 8 (right), undelayed
    assert np.array_equal(steps[:, 1:9].T, codes[0]) and np.array_equal(steps[:, 9:].T, codes[1])
    as_text = make_preset("moshi", word_level(MOSHI_VOCAB)).document(
        codes, None, {"alignments": json.dumps(MOSHI_ALIGNMENTS)})
    assert np.array_equal(as_text.tokens, doc.tokens)


def test_moshi_without_tokenizer_has_a_zero_text_stream():
    codes = random_codes("moshi", 4, channels=1)
    doc = make_preset("moshi").document(codes, "hello")
    steps = doc.tokens.reshape(4, 9)
    assert steps[:, 0].tolist() == [moshi.ZERO] * 4 and np.array_equal(steps[:, 1:].T, codes[0])
    assert make_preset("moshi").dtype == np.int32


# ---- llasa --------------------------------------------------------------------------------------
LLASA_MARKERS = {"<|TEXT_GENERATION_START|>": 128256, "<|TEXT_GENERATION_END|>": 128257,
                 "<|TEXT_UNDERSTANDING_START|>": 128258, "<|TEXT_UNDERSTANDING_END|>": 128259,
                 "<|SPEECH_GENERATION_START|>": 128260, "<|SPEECH_GENERATION_END|>": 128261,
                 "<|SPEECH_UNDERSTANDING_START|>": 128262, "<|SPEECH_UNDERSTANDING_END|>": 128263}


def test_llasa_exact_ids():
    codes = np.array([[[0, 5, 65535]]])
    base_num = 128256 + len(LLASA_MARKERS)         # get_memmap_from_token.py: len(tokenizer) after the markers
    assert make_preset("llasa").document(codes).tokens.tolist() == \
        [128260, base_num, base_num + 5, base_num + 65535, 128261] == [128260, 128264, 128269, 193799, 128261]
    tokenizer = word_level({"hello": 1, "world": 2, **LLASA_MARKERS, "<|s_0|>": 128264}, list(LLASA_MARKERS))
    doc = make_preset("llasa", tokenizer).document(codes, "hello world")
    assert doc.tokens.tolist() == [128258, 1, 2, 128259, 128260, 128264, 128269, 193799, 128261]


# ---- neutts -------------------------------------------------------------------------------------
def neutts_tokenizer(base: int = 1000) -> Tokenizer:
    words = {w: i + 1 for i, w in enumerate(["user", ":", "Convert", "the", "text", "to", "speech", "assistant",
                                             "h", "ə", "l", "oʊ"])}
    markers = {m: 100 + i for i, m in enumerate(["<|TEXT_PROMPT_START|>", "<|TEXT_PROMPT_END|>",
                                                 "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>"])}
    speech = {f"<|speech_{i}|>": base + i for i in range(65536)}
    return word_level({**words, **markers, **speech}, [*markers, *speech])


@pytest.fixture(scope="module")
def neutts_tok() -> Tokenizer:
    return neutts_tokenizer()


def test_neutts_exact_ids(neutts_tok):
    codes = np.array([[[0, 7, 65535]]])
    assert make_preset("neutts").document(codes).tokens.tolist() == [0, 7, 65535]
    doc = make_preset("neutts", neutts_tok).document(codes, "h ə l oʊ")
    # "user: Convert the text to speech:<|TEXT_PROMPT_START|>{phones}<|TEXT_PROMPT_END|>\nassistant:"
    # "<|SPEECH_GENERATION_START|>" + "<|speech_N|>"... + "<|SPEECH_GENERATION_END|>" (examples/finetune.py)
    assert doc.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7, 2, 100, 9, 10, 11, 12, 101, 8, 2,
                                   102, 1000, 1007, 66535, 103]


# ---- every preset -------------------------------------------------------------------------------
def tokenizer_for(name: str, neutts_tok: Tokenizer) -> Tokenizer:
    if name == "orpheus":
        return word_level({"hello": 1})
    if name == "csm":
        return csm_tokenizer()
    if name == "moshi":
        return word_level(MOSHI_VOCAB)
    if name == "llasa":
        return word_level({"hello": 1, **LLASA_MARKERS}, list(LLASA_MARKERS))
    return neutts_tok


CASES = [(name, channels) for name in PRESETS for channels in PRESETS[name].channels]


@pytest.mark.parametrize("name,channels", CASES)
@pytest.mark.parametrize("frames", [1, 6])
@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_round_trip(name, channels, frames, with_tokenizer, neutts_tok):
    preset = make_preset(name, tokenizer_for(name, neutts_tok) if with_tokenizer else None)
    preset.check(MODELS[name], preset.levels, preset.codebook_size, channels)
    codes = random_codes(name, frames, channels, seed=frames)
    codes[..., 0] = preset.codebook_size - 1                    # the largest code survives too
    metadata = {"alignments": [["hello", [0.0, 0.1], "SPEAKER_MAIN"]]}
    doc = preset.document(codes, "hello", metadata)
    assert doc.tokens.dtype == np.int64 and np.iinfo(preset.dtype).max >= doc.tokens.max()
    assert np.array_equal(preset.codes(doc.tokens, channels), codes)
    assert preset.document_length(frames, channels, "hello", metadata) == len(doc.tokens)
    json.dumps({**preset.describe(), **doc.metadata})           # vocab.json and the documents can hold them


def test_tokenizer_from_a_file(tmp_path):
    tokenizer = word_level({"hello": 1, **LLASA_MARKERS}, list(LLASA_MARKERS))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    codes = random_codes("llasa", 3)
    expected = make_preset("llasa", tokenizer).document(codes, "hello").tokens
    for path in (tmp_path / "tokenizer.json", tmp_path, str(tmp_path / "tokenizer.json")):
        assert np.array_equal(make_preset("llasa", path).document(codes, "hello").tokens, expected)
    assert make_preset("llasa", tmp_path).describe()["tokenizer_sha256"] == \
        make_preset("llasa", tokenizer).describe()["tokenizer_sha256"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not a Hugging Face tokenizer.json"):
        make_preset("llasa", tmp_path / "bad.json")
    with pytest.raises(UserError, match="no such file"):
        make_preset("llasa", tmp_path / "missing.json")


# ---- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PRESETS))
def test_refuses_codes_of_another_model(name):
    preset = make_preset(name)
    other = "encodec_24khz"
    cases = [(other, preset.levels, preset.codebook_size, preset.channels[0]),
             (MODELS[name], preset.levels + 1, preset.codebook_size, preset.channels[0]),
             (MODELS[name], preset.levels, preset.codebook_size // 2, preset.channels[0]),
             (MODELS[name], preset.levels, preset.codebook_size, 3)]
    if preset.levels > 1:
        cases.append((MODELS[name], preset.levels - 1, preset.codebook_size, 1))
    for model, n_q, size, channels in cases:
        with pytest.raises(UserError, match=f"--preset {name} .* needs .*; these codes have") as info:
            preset.check(model, n_q, size, channels)
        assert "\n" not in str(info.value)
    for model in (MODELS[name], f"hf:org/{MODELS[name]}", MODELS[name].upper().replace("_", "-")):
        preset.check(model, preset.levels, preset.codebook_size, preset.channels[0])


def test_model_family_is_a_whole_word():
    preset = make_preset("csm")
    for model in ("mimic", "notmimi", "snac_24khz"):
        with pytest.raises(UserError, match="model"):
            preset.check(model, 32, 2048, 1)
    with pytest.raises(UserError, match="model snac_32khz"):
        make_preset("orpheus").check("snac_32khz", 3, 4096, 1)


@pytest.mark.parametrize("name", list(PRESETS))
def test_refuses_codes_that_do_not_fit(name):
    preset = make_preset(name)
    codes = random_codes(name, 2)
    with pytest.raises(UserError, match="takes integer codes"):
        preset.document(codes[:, :-1] if preset.rows > 1 else np.concatenate([codes, codes], 1))
    with pytest.raises(UserError, match="takes integer codes"):
        preset.document(codes.astype(np.float32))
    too_big = codes.copy()
    too_big[0, 0, 1] = preset.codebook_size
    with pytest.raises(UserError, match="codes outside"):
        preset.document(too_big)


# pairs whose ids overlap by design: CSM's frames hold raw Mimi codes, which Moshi's steps and bare
# NeuTTS indices (any code below 65536) also are; only the frame width or the markers tell them apart
OVERLAPPING = {("moshi", "csm"), ("neutts", "csm")}


@pytest.mark.parametrize("name", list(PRESETS))
def test_refuses_tokens_of_another_layout(name):
    preset = make_preset(name)
    for other in PRESETS:
        if other != name and (name, other) not in OVERLAPPING:
            with pytest.raises(UserError):
                preset.codes(make_preset(other).document(random_codes(other, 2, seed=3)).tokens)
    with pytest.raises(UserError):
        preset.codes(np.array([], np.int64))


def test_refusals_of_each_layout(neutts_tok):
    orpheus_tokens = make_preset("orpheus").document(random_codes("orpheus", 2)).tokens
    with pytest.raises(UserError, match="position 1 .*132362"):
        make_preset("orpheus").codes(np.r_[orpheus_tokens[2:3], orpheus_tokens[2:3], orpheus_tokens[4:9]])
    with pytest.raises(UserError, match="whole number of Orpheus frames"):
        make_preset("orpheus").codes(orpheus_tokens[2:-5])
    with pytest.raises(UserError, match="start and .* end markers"):
        make_preset("orpheus").codes(np.r_[orpheus_tokens, orpheus_tokens])
    frames = make_preset("csm").document(random_codes("csm", 2)).tokens.reshape(-1, 33)
    with pytest.raises(UserError, match="EOS frame"):
        make_preset("csm").codes(frames[:-1].reshape(-1))
    with pytest.raises(UserError, match="whole number of CSM frames"):
        make_preset("csm").codes(frames.reshape(-1)[:-1])
    stereo = make_preset("moshi").document(random_codes("moshi", 3, channels=2)).tokens
    with pytest.raises(UserError):
        make_preset("moshi").codes(stereo, channels=1)        # 51 ids: 3 steps of 17, not steps of 9
    with pytest.raises(UserError, match="1 channel"):
        make_preset("orpheus").codes(orpheus_tokens, channels=2)
    with pytest.raises(UserError, match="not a NeuTTS speech token"):
        make_preset("neutts", neutts_tok).codes(np.array([5, 1000]))
    with pytest.raises(UserError, match="not a Llasa speech token"):
        make_preset("llasa").codes(np.array([128260, 128263, 128261]))


def test_refuses_a_tokenizer_that_is_not_the_lms(neutts_tok):
    with pytest.raises(UserError, match=r"<\|SPEECH_GENERATION_START\|> is id 5, llasa was trained with 128260"):
        make_preset("llasa", word_level({**LLASA_MARKERS, "<|SPEECH_GENERATION_START|>": 5}))
    with pytest.raises(UserError, match=r"has no <\|begin_of_text\|> token"):
        make_preset("csm", word_level({"hello": 1}))
    with pytest.raises(UserError, match=r"has no <\|speech_3\|> token"):
        make_preset("neutts", word_level({m: 100 + i for i, m in enumerate(
            ["<|TEXT_PROMPT_START|>", "<|TEXT_PROMPT_END|>", "<|SPEECH_GENERATION_START|>",
             "<|SPEECH_GENERATION_END|>", "<|speech_0|>", "<|speech_1|>", "<|speech_2|>"])}))
    # a tokenizer that splits the speech tokens apart (not added tokens) cannot make NeuTTS sequences
    plain = word_level(json.loads(neutts_tok.to_str())["model"]["vocab"], ["<|SPEECH_GENERATION_START|>"])
    with pytest.raises(UserError, match="single tokens"):
        make_preset("neutts", plain).document(np.array([[[1, 2]]]), "h")


def test_refuses_missing_text_and_alignments():
    for name, tokenizer in (("orpheus", word_level({"hello": 1})), ("csm", csm_tokenizer()),
                            ("llasa", word_level({**LLASA_MARKERS}, list(LLASA_MARKERS)))):
        with pytest.raises(UserError, match="needs each file's text"):
            make_preset(name, tokenizer).document(random_codes(name, 2), None)
    preset = make_preset("moshi", word_level(MOSHI_VOCAB))
    with pytest.raises(UserError, match="word timestamps"):
        preset.document(random_codes("moshi", 2), "hello", {})
    with pytest.raises(UserError, match=r"\[\[word, \[start, end\], speaker\]"):
        preset.document(random_codes("moshi", 2), "hello", {"alignments": [["hi", 0.5, "SPEAKER_MAIN"]]})


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match="--preset must be one of orpheus, csm, moshi, llasa, neutts"):
        make_preset("valle")
