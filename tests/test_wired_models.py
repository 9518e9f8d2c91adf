"""Mimi, SNAC and hf: models through the registry, Codec and the CLI.

Random weights in the published layouts (tests/mimi_reference.py, tests/test_snac.py,
tests/test_hf_backend.py build them offline): Mimi goes through its streams (codes equal to one
pass over the whole input at any chunk size, state of a bounded size), SNAC stores its levels as
rows at the coarse rate (code files say how many levels made them), our Mimi and transformers'
Mimi give the same codes on the same weights, a batch of files gives each its codes alone, and
`rvq encode/decode/info/tokenize/eval` run with each kind; codes of one model are refused by
another, and a checkpoint named with the wrong KIND is refused in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rvqtool.codec import load_codec
from rvqtool.errors import UserError
from rvqtool.io.codes import load_codes
from rvqtool.registry import model_for_codes
from rvqtool.tokens.encoders import AudioEncoder, BatchedAudioEncoder
from tests.cli_harness import write_audio
from tests.mimi_reference import import_moshi, import_transformers, moshi_mimi, transformers_mimi
from tests.pretrained_reference import clips

import_moshi()
import_transformers()
from tests.test_hf_backend import _mimi as tiny_hf_mimi  # noqa: E402
from tests.test_snac import SMALL_32KHZ, import_snac, snac_folder  # noqa: E402

import_snac()
# the 24 kHz SNAC architecture (rates, strides 4/2/1, no attention) at small widths
SMALL_24KHZ = {"sampling_rate": 24000, "encoder_dim": 8, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 64,
               "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
               "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """KIND:PATH of a model of each kind (and the transformers layout of the Mimi as mimi: and hf:)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("wired")
    moshi, mimi_file = moshi_mimi(root)
    _, mimi_folder = transformers_mimi(moshi, root)
    _, snac24, _ = snac_folder(root, SMALL_24KHZ, seconds=1.0)
    _, snac32, _ = snac_folder(root, SMALL_32KHZ, seconds=1.0)
    hf_folder = tiny_hf_mimi(root / "hf-mimi")
    return {"mimi": f"mimi:{mimi_file}", "mimi_folder": f"mimi:{mimi_folder}", "hf_of_mimi": f"hf:{mimi_folder}",
            "snac_24khz": f"snac_24khz:{snac24}", "snac_32khz": f"snac_32khz:{snac32}", "hf": f"hf:{hf_folder}"}


def _speech(seconds: float, rate: int = 24000) -> np.ndarray:
    return np.concatenate(clips(rate))[: int(seconds * rate)]


# ---- Mimi through its streams ------------------------------------------------------------------
@pytest.mark.parametrize("chunk_seconds", [0.08, 0.56, 3.0])
def test_mimi_streamed_through_codec_equals_the_whole_input(models, chunk_seconds):
    audio = _speech(6.3)   # not whole frames
    codec = load_codec(models["mimi"], chunk_seconds=chunk_seconds)
    assert codec.streaming and not codec.whole_input
    with torch.inference_mode():
        wav = torch.from_numpy(np.pad(audio, (0, -len(audio) % codec.hop_length)))[None, None]
        whole = codec.model.quantize(codec.model.encode_latents(wav), 32).numpy()
        whole_audio = codec.model.decode_latents(codec.model.dequantize(torch.from_numpy(whole)))[0, :, :len(audio)].numpy()
    codes = codec.encode_blocks(np.array_split(audio[None], 7, axis=1), None, "mono", 24000)
    assert codes.codes.shape == (1, 32, -(-len(audio) // 1920)) and codes.meta.length == len(audio)
    assert (codes.codes == whole).all()
    decoded = codec.decode(codes)
    assert decoded.shape == (1, len(audio))
    assert np.abs(decoded - whole_audio).max() < 1e-5 * max(1.0, float(np.abs(whole_audio).max()))


def test_mimi_streaming_state_stays_bounded(models, monkeypatch):
    codec = load_codec(models["mimi"], chunk_seconds=1.0)
    streams, sizes = [], []
    make = codec.model.encoder_stream

    def recorded(batch):
        streams.append(make(batch))
        return streams[-1]

    monkeypatch.setattr(codec.model, "encoder_stream", recorded)
    audio = np.tile(_speech(6.0), 5)    # 30 s: past the transformer's 10 s window
    for _ in codec.latent_windows([audio[None]]):
        sizes.append(streams[0].state_numel())
    assert len(streams) == 1 and len(sizes) == -(-len(audio) // (codec.windowing.chunk_frames * 1920)) == 32
    assert max(sizes[12:]) == min(sizes[12:]) == sizes[-1] and sizes[0] < sizes[-1]


def test_our_mimi_and_transformers_mimi_give_the_same_codes(models):
    audio = _speech(4.0)
    ours = load_codec(models["mimi_folder"]).encode(audio)
    theirs_codec = load_codec(models["hf_of_mimi"])
    theirs = theirs_codec.encode(audio)
    assert theirs_codec.name == "hf:mimi" and ours.codes.shape == theirs.codes.shape
    share = float((ours.codes == theirs.codes).mean())
    print(f"our Mimi vs transformers' Mimi, same weights: {share:.4%} of {ours.codes.size} codes equal")
    assert share == 1.0
    moshi_layout = load_codec(models["mimi"]).encode(audio)
    assert (moshi_layout.codes == ours.codes).all()


# ---- SNAC's rows -------------------------------------------------------------------------------
def test_snac_codes_are_rows_and_n_q_counts_levels(models):
    codec = load_codec(models["snac_24khz"], chunk_seconds=0.5)
    assert not codec.whole_input and codec.multiples == (1, 2, 4)
    audio = _speech(2.3)
    with torch.inference_mode():
        whole = codec.model.quantize(codec.model.encode_latents(torch.from_numpy(audio)[None, None]), 3).numpy()
    for levels, rows in ((1, 1), (2, 3), (3, 7)):
        codes = codec.encode(audio, n_q=levels)
        assert codes.codes.shape == (1, rows, -(-len(audio) // 2048))
        assert codes.meta.n_q == rows and codes.meta.levels == levels and codes.meta.frame_multiple == 1
        assert (codes.codes == whole[:, codec.model.level_rows(levels)]).all()   # windows = one pass
        assert codec.bandwidth_kbps(levels) == pytest.approx(24000 / 2048 * rows * 12 / 1000)
    assert codec.levels_for(bandwidth=24000 / 2048 * 3 * 12 / 1000) == 2
    full = codec.encode(audio)
    fewer = codec.decode(full, n_q=2)
    two = codec.encode(audio, n_q=2)
    assert np.allclose(fewer, codec.decode(two), atol=1e-5) and fewer.shape == (1, len(audio))
    meta = full.meta.to_dict()
    assert meta["levels"] == 3 and "frame_multiple" not in meta


def test_snac_windows_draw_their_own_noise_the_same_on_every_run(models):
    codec = load_codec(models["snac_24khz"], chunk_seconds=0.5)
    codes = codec.encode(_speech(2.0))
    assert np.array_equal(codec.decode(codes), codec.decode(codes))
    with torch.inference_mode():
        latents = codec.model.dequantize(torch.from_numpy(codes.codes[..., :10]))
        first, later = codec.model.decode_window(latents, 0), codec.model.decode_window(latents, 6)
        assert torch.equal(first, codec.model.decode_latents(latents))   # window 0: the whole pass's seed
    assert not torch.equal(first, later)


def test_snac_with_attention_pads_to_four_frames_and_decodes_whole(models, tmp_path):
    codec = load_codec(models["snac_32khz"])
    assert codec.whole_input
    audio = _speech(1.1, 32000)
    codes = codec.encode(audio, n_q=2)
    assert codes.meta.frame_multiple == 4 and codes.frames % 4 == 0 and codes.meta.n_q == 3
    path = tmp_path / "c.npy"
    from rvqtool.io.codes import save_codes
    save_codes(codes, path)
    loaded = load_codes(path)
    assert (loaded.codes == codes.codes).all() and loaded.meta == codes.meta
    assert codec.decode(loaded).shape == (1, len(audio))


# ---- tokenize: a batch gives each file its codes alone --------------------------------------------
@pytest.mark.parametrize("kind", ["mimi", "snac_24khz", "snac_32khz", "hf"])
def test_batched_encoding_equals_one_at_a_time(models, kind, tmp_path):
    codec = load_codec(models[kind], chunk_seconds=1.0)
    rate = codec.sample_rate
    paths = [str(write_audio(tmp_path / f"{i}.wav", seconds, rate, seed=i))
             for i, seconds in enumerate([1.3, 2.2, 1.3, 0.7, 2.2])]
    levels = codec.config.n_quantizers                     # encoders count levels, as --n-q does
    alone = AudioEncoder(codec, levels).encode_group(paths)
    batched = BatchedAudioEncoder(codec, levels, batch=3).encode_group(paths)
    for a, b in zip(alone, batched):
        assert a.meta == b.meta and (a.codes == b.codes).all()


# ---- the CLI with each kind ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mimi", "snac_24khz", "snac_32khz", "hf"])
def test_cli_encode_decode_info_tokenize_eval(rvq, models, kind, tmp_path):
    spec = models[kind]
    rate = load_codec(spec).sample_rate
    write_audio(tmp_path / "corpus" / "a.wav", 1.5, rate)
    write_audio(tmp_path / "corpus" / "b.wav", 0.9, rate, seed=1)
    res = rvq("encode", "corpus/a.wav", "-o", "a.npy", "--model", spec, "--n-q", "2", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    codes = load_codes(tmp_path / "a.npy")
    assert codes.meta.model_path == spec.partition(":")[2]
    res = rvq("decode", "a.npy", "-o", "a.wav", cwd=tmp_path)   # the model found from the code file
    assert res.rc == 0 and res.stderr == "", res
    assert (tmp_path / "a.wav").stat().st_size > 1000
    res = rvq("info", "a.npy", "--json", cwd=tmp_path)
    assert res.rc == 0, res
    facts = json.loads(res.stdout)
    assert facts["n_q"] == codes.meta.n_q and facts["model"] == codes.meta.model
    if kind.startswith("snac"):
        assert facts["levels"] == 2 and "--n-q counts levels" in facts["layout"]
    res = rvq("info", spec, cwd=tmp_path)
    assert res.rc == 0 and "sample_rate" in res.stdout.decode(), res
    res = rvq("tokenize", "corpus", "-o", "shards", "--model", spec, cwd=tmp_path)
    assert res.rc == 0, res
    assert (tmp_path / "shards" / "vocab.json").exists()
    res = rvq("eval", "corpus", "--model", spec, "--n-q", "1", "--metrics", "mel", "--threads", "1", cwd=tmp_path)
    assert res.rc == 0 and "mel" in res.stdout.decode(), res


def test_snac_info_says_how_levels_are_stored(rvq, models, tmp_path):
    write_audio(tmp_path / "a.wav", 1.0, 24000)
    assert rvq("encode", "a.wav", "-o", "a.rvq", "--model", models["snac_24khz"], cwd=tmp_path).rc == 0
    res = rvq("info", "a.rvq", cwd=tmp_path)
    assert "3 levels at 11.72 / 23.44 / 46.88 Hz stored as 7 rows per 11.72 Hz frame (Orpheus order); " \
           "--n-q counts levels" in res.stdout.decode(), res
    res = rvq("info", models["snac_24khz"], cwd=tmp_path)
    assert "3 levels at 11.72 / 23.44 / 46.88 Hz stored as 7 rows" in res.stdout.decode(), res


# ---- refusals and hints ------------------------------------------------------------------------------
def test_codes_of_one_model_are_refused_by_another(rvq, models, tmp_path):
    write_audio(tmp_path / "a.wav", 1.0, 24000)
    assert rvq("encode", "a.wav", "-o", "a.npy", "--model", models["mimi"], cwd=tmp_path).rc == 0
    for other in ("snac_24khz", "hf"):
        res = rvq("decode", "a.npy", "-o", "b.wav", "--model", models[other], cwd=tmp_path)
        assert res.rc == 1 and len(res.err_lines) == 1 and "not by" in res.stderr, res


@pytest.mark.parametrize("kind, given", [("snac_24khz", "mimi"), ("mimi", "snac_24khz"), ("hf", "snac_24khz"),
                                         ("snac_32khz", "snac_24khz")])
def test_a_wrong_kind_is_refused_in_one_line(rvq, models, kind, given, tmp_path):
    write_audio(tmp_path / "a.wav", 0.5, 24000)
    wrong = f"{kind}:{models[given].partition(':')[2]}"
    res = rvq("encode", "a.wav", "-o", "a.npy", "--model", wrong, cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 1 and res.stderr.startswith("error:"), res


@pytest.mark.parametrize("kind", ["mimi", "mimi_folder", "snac_24khz", "hf"])
def test_codes_name_the_kind_to_decode_them_with(models, kind, tmp_path):
    codec = load_codec(models[kind])
    codes = codec.encode(_speech(0.5, codec.sample_rate))
    assert model_for_codes(codes.meta) == models[kind]          # the recorded path exists
    moved = type(codes.meta)(**{**codes.meta.__dict__, "model_path": str(tmp_path / "gone")})
    with pytest.raises(UserError, match=f"pass --model {models[kind].partition(':')[0]}:PATH"):
        model_for_codes(moved)


def test_a_converted_mimi_is_our_model_file(models, tmp_path):
    from rvqtool.pretrained.convert import convert

    path = convert(models["mimi"], tmp_path / "mimi-converted")
    codec = load_codec(str(path))
    codes = codec.encode(_speech(1.0))
    assert codec.streaming and model_for_codes(codes.meta) == str(path)
    assert (codes.codes == load_codec(models["mimi"]).encode(_speech(1.0)).codes).all()
    with pytest.raises(UserError, match="not converted"):
        convert(models["hf"], tmp_path / "hf-converted")
