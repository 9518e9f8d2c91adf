"""SNAC folders on rvqtool's modules give the `snac` package's codes and audio.

Against `snac` 1.2.1 (PyPI, installed --no-deps: it needs only torch, numpy and einops to encode
and decode) with random, seeded weights saved in the published layout (config.json +
pytorch_model.bin), codebooks filled from real latents: the real 24 kHz config (the speech
model Orpheus uses; no attention) and a small config of the 32/44 kHz architecture (local
attention, four levels, an odd stride). Codes at every level count, decoded audio (the decoder's
noise blocks draw from generators seeded alike on both sides), the padding rule, windows, the
rows layout and refusals."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rvqtool import UserError
from rvqtool.model.snac import NoiseBlock, levels_to_rows, row_positions, rows_for_levels, rows_to_levels
from rvqtool.pretrained import snac as pretrained_snac
from tests.pretrained_reference import clips, spread_seeds

SNAC_24KHZ = {"sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
              "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
              "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}   # hubertsiuzdak/snac_24khz
# the 32/44 kHz architecture (rates, attention windows of 32, four levels) at small widths
SMALL_32KHZ = {"sampling_rate": 32000, "encoder_dim": 4, "encoder_rates": [2, 3, 8, 8], "decoder_dim": 128,
               "decoder_rates": [8, 8, 3, 2], "attn_window_size": 32, "codebook_size": 256, "codebook_dim": 8,
               "vq_strides": [8, 4, 2, 1], "noise": True, "depthwise": True}


def import_snac():
    return pytest.importorskip("snac")


@torch.no_grad()
def snac_folder(directory, config: dict, seconds: float, test_seconds: float | None = None, seed: int = 0):
    """(reference SNAC, folder in the published layout, test audio: the first `test_seconds` of
    each example clip, default `seconds`): random weights, the encoder's redrawn as
    tests/pretrained_reference.py redraws EnCodec's (with torch's default init the projections
    all point one way: 12 distinct level-0 codes in 106 frames; the decoder keeps its init, as
    gains of 1 there grow activations until rounding reaches 1e-4 of the audio), and each
    level's codebook drawn from the l2-normalised projections of real audio's residuals (the
    first `seconds` of each example clip, 160 samples in: the test audio starts at 0, so it is
    not what the codebooks were drawn from), seeds kept apart (the clips' digital silence would
    give copies: exact ties), repeated where frames are fewer than codes, and jittered by a
    tenth of their norm: copies jittered less (0.02) left near-ties between them (squared
    distances within 1e-5 for ~14 % of frames), which float rounding decides."""
    snac = import_snac()
    torch.set_num_threads(1)   # oneDNN's threads wait for each other on a busy machine
    torch.manual_seed(seed)
    model = snac.SNAC(**config).eval()
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.encoder.named_parameters():   # weight-norm gains 1, small biases: see below
        if name.endswith("parametrizations.weight.original0"):
            p.fill_(1.0)
        elif name.endswith(".bias"):
            p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
    rate = config["sampling_rate"]
    pieces = clips(rate)
    fit = torch.from_numpy(np.concatenate([p[160: int(seconds * rate) + 160] for p in pieces]))[None, None]
    residual = model.encoder(model.preprocess(fit))
    for level in model.quantizer.quantizers:
        pooled = torch.nn.functional.avg_pool1d(residual, level.stride) if level.stride > 1 else residual
        projected = torch.nn.functional.normalize(level.in_proj(pooled)[0].T.contiguous())
        seeds = spread_seeds(projected, level.codebook.weight.shape[0], generator)
        level.codebook.weight.copy_(seeds + torch.randn(seeds.shape, generator=generator) * 0.1)
        z_q, _ = level(residual)
        residual = residual - z_q
    folder = directory / f"snac_{rate // 1000}khz"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model, folder, np.concatenate([p[: int((test_seconds or seconds) * rate) + 160] for p in pieces])


def reference_decode(model, codes: list[torch.Tensor], seed: int) -> torch.Tensor:
    """SNAC's from_codes + decoder for the first len(codes) levels (its from_codes needs all)."""
    torch.manual_seed(seed)
    latent = sum(q.out_proj(q.decode_code(c)).repeat_interleave(q.stride, dim=-1)
                 for q, c in zip(model.quantizer.quantizers, codes))
    return model.decoder(latent)


def equal_share(ours: torch.Tensor, expected: torch.Tensor) -> float:
    assert ours.shape == expected.shape
    return float((ours == expected).double().mean())


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    model, folder, audio = snac_folder(tmp_path_factory.mktemp("snac"), SNAC_24KHZ, seconds=1.0, test_seconds=2.0)
    ours, meta = pretrained_snac.load("snac_24khz", folder)
    return model, ours, meta, folder, audio[:-77]   # not a whole number of frames


# ---- the rows layout ---------------------------------------------------------------------------------
def test_rows_are_orpheus_order_at_24khz():
    c0, c1, c2 = torch.tensor([[10, 11]]), torch.tensor([[20, 21, 22, 23]]), torch.arange(30, 38)[None]
    rows = levels_to_rows([c0, c1, c2])
    assert rows.shape == (1, 7, 2)
    assert rows[0, :, 0].tolist() == [10, 20, 30, 31, 21, 32, 33]      # [c0_j, c1_2j, c2_4j, c2_4j+1, ...]
    assert rows[0, :, 1].tolist() == [11, 22, 34, 35, 23, 36, 37]
    assert [len(rows_for_levels(n, (1, 2, 4))) for n in (1, 2, 3)] == [1, 3, 7]
    assert rows_for_levels(2, (1, 2, 4)) == [0, 1, 4]
    # the rows of the first levels, in the same order, are what fewer levels encode to
    assert levels_to_rows([c0, c1]).tolist() == rows[:, rows_for_levels(2, (1, 2, 4))].tolist()


@pytest.mark.parametrize("multiples", [(1,), (1, 2), (1, 2, 4), (1, 2, 4, 8), (1, 4), (1, 3, 6)])
@pytest.mark.parametrize("as_numpy", [False, True])
def test_rows_round_trip(multiples, as_numpy):
    generator = torch.Generator().manual_seed(len(multiples))
    levels = [torch.randint(4096, (2, 5 * m), generator=generator) for m in multiples]
    if as_numpy:
        levels = [level.numpy() for level in levels]
    rows = levels_to_rows(levels)
    assert rows.shape == (2, sum(multiples), 5) and isinstance(rows, type(levels[0]))
    assert len(row_positions(multiples)) == sum(multiples)
    for back, level in zip(rows_to_levels(rows, multiples), levels):
        assert (back == level).all()
    with pytest.raises(ValueError, match="rows"):
        rows_to_levels(rows[:, :-1], multiples) if sum(multiples) > 1 else rows_to_levels(rows, (1, 2))


def test_depth_first_order_of_four_levels():
    """32/44 kHz: 15 rows a frame, each coarser code followed by the finer codes in its span."""
    order = row_positions((1, 2, 4, 8))
    assert order[:8] == [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (2, 1), (3, 2), (3, 3)]
    assert order[8] == (1, 1) and len(order) == 15


# ---- the 24 kHz speech model -------------------------------------------------------------------------
def test_config_of_the_24khz_model(speech):
    _, ours, meta, _, _ = speech
    config = ours.config
    assert (config.sample_rate, config.hop_length, config.n_quantizers, config.codebook_size) == (24000, 2048, 3, 4096)
    assert config.frame_rate == pytest.approx(11.71875)
    assert [config.frame_rate * m for m in ours.multiples] == pytest.approx([11.72, 23.44, 46.88], abs=0.01)
    assert [ours.rows(n) for n in (1, 2, 3)] == [1, 3, 7]
    assert meta["name"] == "snac_24khz" and len(meta["sha256"]) == 64
    assert not ours.whole_input


def test_codes_equal_the_reference_at_every_level_count(speech):
    model, ours, _, _, audio = speech
    wav = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        latent = model.encoder(model.preprocess(wav))
        expected = model.quantizer(latent)[1]
        ours_latent = ours.encode_latents(wav)
        error = float((latent - ours_latent).norm() / latent.norm())
        print(f"latent relative error {error:.2e}")
        assert error < 1e-5
        for n in (1, 2, 3):
            rows = ours.quantize(ours_latent, n)
            share = equal_share(rows, levels_to_rows(expected[:n]))
            print(f"levels={n}: {share:.5%} of {rows.numel()} codes equal")
            assert share >= 0.999
    distinct = [len(torch.unique(level)) for level in expected]
    print("distinct codes per level:", distinct, "of", [level.numel() for level in expected])
    assert min(d / level.numel() for d, level in zip(distinct, expected)) > 0.8


def test_padding_rule_gives_the_reference_frame_count(speech):
    """24 kHz pads to a multiple of hop x lcm(4, 1) = 2048 samples: one coarse frame."""
    model, ours, _, _, _ = speech
    for samples in (1, 2047, 2048, 2049, 5000):
        with torch.no_grad():
            expected = model.encode(torch.zeros(1, 1, samples))
        assert ours.frames(samples) == expected[0].shape[-1] == math.ceil(samples / 2048)
        assert [level.shape[-1] for level in expected] == [ours.frames(samples) * m for m in ours.multiples]


def test_decoded_audio_matches_the_reference_with_the_same_noise(speech):
    model, ours, _, _, audio = speech
    audio = audio[:24000]
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(audio)[None, None])
        for n in (1, 3):
            expected = reference_decode(model, codes[:n], seed=7)
            rows = levels_to_rows(codes[:n])
            decoded = ours.decode_latents(ours.dequantize(rows), torch.Generator().manual_seed(7))
            error = float((decoded - expected).norm() / expected.norm())
            print(f"levels={n}: decode relative error {error:.2e}")
            assert decoded.shape == expected.shape and error < 1e-4
        # the noise is real: another seed gives other audio; no generator: seed 0, the same every time
        other = ours.decode_latents(ours.dequantize(rows), torch.Generator().manual_seed(8))
        assert float((other - decoded).norm() / decoded.norm()) > 1e-3
        assert torch.equal(ours.decode_latents(ours.dequantize(rows)), ours.decode_latents(ours.dequantize(rows)))


def test_windows_give_the_whole_file_codes(speech):
    """Without attention a coarse frame's codes depend only on `encoder_context` samples either
    side: encoding 3-frame windows with that context gives the whole file's codes."""
    _, ours, _, _, audio = speech
    wav = torch.from_numpy(audio[:48000])[None, None]
    hop, (left, right) = ours.config.hop_length, ours.encoder_context()
    assert left % hop == 0 and right % hop == 0
    with torch.no_grad():
        whole = ours.quantize(ours.encode_latents(wav), 3)
        padded = torch.nn.functional.pad(wav, (0, ours.padded_length(wav.shape[-1]) - wav.shape[-1]))
        pieces, frames = [], whole.shape[-1]
        for first in range(0, frames, 3):
            end = min(first + 3, frames)
            start, stop = max(0, first * hop - left), min(end * hop + right, padded.shape[-1])
            latent = ours.encode_latents(padded[..., start:stop])
            per_frame = ours.latent_frames_per_frame
            offset = (first * hop - start) // ours.latent_hop
            pieces.append(ours.quantize(latent[..., offset: offset + (end - first) * per_frame], 3))
    share = equal_share(torch.cat(pieces, -1), whole)
    print(f"windowed: {share:.5%} of {whole.numel()} codes equal to whole-file codes")
    assert share >= 0.999


def test_windowed_audio_equals_whole_file_audio_without_noise(speech, tmp_path):
    """`decoder_context` frames either side bound what reaches a frame's audio: with the noise
    blocks' weights at zero, windows give the whole file's audio within rounding."""
    _, ours, _, folder, audio = speech
    quiet, _ = pretrained_snac.load("snac_24khz", folder)
    with torch.no_grad():
        for module in quiet.modules():
            if isinstance(module, NoiseBlock):
                module.linear.weight_g.zero_()
        rows = quiet.quantize(quiet.encode_latents(torch.from_numpy(audio[:36000])[None, None]), 3)
        whole = quiet.decode_latents(quiet.dequantize(rows))
        hop, (left, right) = quiet.config.hop_length, quiet.decoder_context()
        pieces, frames = [], rows.shape[-1]
        for first in range(0, frames, 6):
            end = min(first + 6, frames)
            start, stop = max(0, first - left), min(frames, end + right)
            wav = quiet.decode_latents(quiet.dequantize(rows[..., start:stop]))
            pieces.append(wav[..., (first - start) * hop: (end - start) * hop])
    windowed = torch.cat(pieces, -1)
    error = float((windowed - whole).norm() / whole.norm())
    print(f"windowed decode relative error {error:.2e}")
    assert windowed.shape == whole.shape and error < 1e-5


# ---- the 32/44 kHz architecture (attention), small --------------------------------------------------
def test_attention_model_gives_the_reference_codes_and_audio(tmp_path):
    model, folder, audio = snac_folder(tmp_path, SMALL_32KHZ, seconds=5.0)
    ours, _ = pretrained_snac.load("snac_32khz", folder)
    assert ours.whole_input and ours.encoder_context() is None and ours.decoder_context() is None
    assert (ours.config.hop_length, ours.pad_unit, ours.multiples) == (3072, 12288, (1, 2, 4, 8))
    audio = audio[: 38 * 12288 + 100]
    wav = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        expected = model.encode(wav)
        # the padding rule: to a multiple of 12288 samples, 4 frames; ceil(n / 3072) would be 3 fewer here
        assert ours.frames(len(audio)) == expected[0].shape[-1] == 4 * math.ceil(len(audio) / 12288)
        assert ours.frames(len(audio)) == math.ceil(len(audio) / 3072) + 3
        latent = ours.encode_latents(wav)
        for n in (1, 2, 3, 4):
            share = equal_share(ours.quantize(latent, n), levels_to_rows(expected[:n]))
            print(f"levels={n}: {share:.5%} of {ours.rows(n) * expected[0].shape[-1]} codes equal")
            assert share >= 0.999
        distinct = [len(torch.unique(level)) for level in expected]
        print("distinct codes per level:", distinct, "of", [level.numel() for level in expected])
        assert min(d / min(level.numel(), 256) for d, level in zip(distinct, expected)) > 0.5   # 256 codes
        short = [level[:, : 8 * m] for level, m in zip(expected, ours.multiples)]   # 2 windows of attention
        reference_audio = reference_decode(model, short, seed=3)
        decoded = ours.decode_latents(ours.dequantize(levels_to_rows(short)), torch.Generator().manual_seed(3))
    error = float((decoded - reference_audio).norm() / reference_audio.norm())
    print(f"decode relative error {error:.2e}")
    assert decoded.shape == reference_audio.shape and error < 1e-4
    with pytest.raises(ValueError, match="whole attention windows of 32 .4 frames of codes."):
        ours.decode_latents(ours.dequantize(levels_to_rows(short)[..., :6]))


def test_block_aligned_windows_give_the_whole_file_codes_with_attention(tmp_path):
    """What holds for the attention models: windows that start at multiples of the padding unit
    (whole attention windows) with two units of context either side (the neighbouring attention
    window, which the last conv reaches, plus the conv stack's reach before attention, under one
    unit) give the whole file's codes. rvqtool's windows (any frame boundary) would not."""
    model, folder, audio = snac_folder(tmp_path, SMALL_32KHZ, seconds=1.0, test_seconds=3.0)
    ours, _ = pretrained_snac.load("snac_32khz", folder)
    wav = torch.from_numpy(audio[: 5 * 12288 + 300])[None, None]
    unit, hop = ours.pad_unit, ours.config.hop_length
    with torch.no_grad():
        whole_latent = ours.encode_latents(wav)
        whole = ours.quantize(whole_latent, 4)
        padded = torch.nn.functional.pad(wav, (0, ours.padded_length(wav.shape[-1]) - wav.shape[-1]))
        frames = unit // ours.latent_hop   # latent frames a unit
        latents = []
        for start in range(0, padded.shape[-1], unit):
            first, stop = max(0, start - 2 * unit), min(padded.shape[-1], start + 3 * unit)
            offset = (start - first) // ours.latent_hop
            latents.append(ours.encode_latents(padded[..., first:stop])[..., offset: offset + frames])
        windowed = torch.cat(latents, -1)
        share = equal_share(ours.quantize(windowed, 4), whole)
        # one unit of context is too little: the latents then differ by more than rounding
        short = ours.encode_latents(padded[..., unit: 4 * unit])[..., frames: 2 * frames]
        centre = whole_latent[..., 2 * frames: 3 * frames]
        short_error = float((short - centre).norm() / centre.norm())
    error = float((windowed - whole_latent).norm() / whole_latent.norm())
    print(f"aligned windows: latent relative error {error:.1e}, {share:.5%} of {whole.numel()} codes equal to "
          f"whole-file codes; one unit of context: latent error {short_error:.1e}")
    assert error < 1e-6 and share >= 0.999 and short_error > 1e-5


def test_a_batch_of_equal_padded_lengths_gives_each_item_its_own_codes(speech):
    """Items are padded to the pad unit, so items of the same padded length (the same number of
    frames at 24 kHz) batch without changing their codes. Longer batch padding would: each
    layer's zero padding at an item's end becomes the activations of silence."""
    _, ours, _, _, audio = speech
    a, b = torch.from_numpy(audio[:24000]), torch.from_numpy(audio[30000:30000 + 24000 - 500])
    assert ours.frames(len(a)) == ours.frames(len(b))
    with torch.no_grad():
        batch = ours.quantize(ours.encode_latents(torch.stack([a, torch.nn.functional.pad(b, (0, 500))])[:, None]), 3)
        alone = torch.cat([ours.quantize(ours.encode_latents(x[None, None]), 3) for x in (a, b)])
    share = equal_share(batch, alone)
    print(f"batched: {share:.5%} of {alone.numel()} codes equal to one at a time")
    assert share >= 0.999


def test_dequantize_refuses_a_row_count_of_no_level_count(speech):
    _, ours, _, _, _ = speech
    with pytest.raises(ValueError, match="1, 3, 7"):
        ours.dequantize(torch.zeros(1, 5, 2, dtype=torch.long))


# ---- refusals ----------------------------------------------------------------------------------------
def _folder(tmp_path, config: dict | None = None, state: dict | None = None, name: str = "bad"):
    folder = tmp_path / name
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if state is not None:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("kind, change, fragment", [
    ("snac_32khz", None, "a 24000 Hz SNAC model, not snac_32khz (use snac_24khz:PATH)"),
    ("snac_24khz", {"use_ema": True}, "not a SNAC config (unknown keys use_ema)"),
    ("snac_24khz", {"vq_strides": [4, 3, 1]}, "each must divide the one before"),
    ("snac_24khz", {"latent_dim": 512}, "latent_dim 512 is not the encoder's width 768"),
    ("snac_24khz", {"encoder_rates": [2, 4, 8]}, "different products"),
    ("snac_24khz", {"attn_window_size": 32, "decoder_dim": 1000}, "multiples of 64"),
    ("snac_24khz", {"decoder_dim": 512}, "has shape"),
    ("snac_24khz", {"noise": False}, "unexpected"),
])
def test_mismatched_configs_are_refused(speech, tmp_path, kind, change, fragment):
    _, _, _, folder, _ = speech
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    bad = _folder(tmp_path, {**SNAC_24KHZ, **(change or {})}, state)
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        pretrained_snac.load(kind, bad)


def test_malformed_folders_are_refused(speech, tmp_path):
    _, _, _, folder, _ = speech
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    cases = [
        (_folder(tmp_path, SNAC_24KHZ, None, "no_weights"), "no pytorch_model.bin in this folder"),
        (_folder(tmp_path, None, state, "no_config"), "no config.json beside the weights"),
        (_folder(tmp_path, SNAC_24KHZ, {"state_dict": state, "metadata": {}}, "dac"), "looks like a DAC checkpoint"),
        (_folder(tmp_path, SNAC_24KHZ, {k: v for k, v in state.items() if "decoder" not in k}, "part"), "missing"),
        (_folder(tmp_path, [1, 2], state, "list"), "expected a JSON object"),
        (tmp_path / "nothing.bin", "no such SNAC folder or weights file"),
        (folder / "config.json", "expected a SNAC folder or its pytorch_model.bin"),
    ]
    safetensors = _folder(tmp_path, SNAC_24KHZ, None, "safetensors")
    (safetensors / "model.safetensors").write_bytes(b"")
    cases.append((safetensors, "only pytorch_model.bin is read"))
    objects = _folder(tmp_path, SNAC_24KHZ, None, "pickle")
    torch.save({"model": torch.nn.Linear(1, 1)}, objects / "pytorch_model.bin")
    cases.append((objects, "not a loadable torch checkpoint of plain tensors"))
    broken = _folder(tmp_path, None, state, "broken_json")
    (broken / "config.json").write_text("{")
    cases.append((broken, "not a readable JSON file"))
    for path, fragment in cases:
        with pytest.raises(UserError, match=fragment):
            pretrained_snac.load("snac_24khz", path)


def test_the_weights_file_names_the_model_too(speech):
    """KIND:PATH may name the folder or its pytorch_model.bin: the same model either way."""
    _, ours, meta, folder, _ = speech
    by_file, file_meta = pretrained_snac.load("snac_24khz", folder / "pytorch_model.bin")
    assert file_meta == meta and by_file.config == ours.config
    for (name, a), (_, b) in zip(ours.state_dict().items(), by_file.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_published_44khz_config_runs_as_the_reference(tmp_path):
    """hubertsiuzdak/snac_44khz's config (54.5 M parameters; 32 kHz is the same network), one
    padding unit of audio, torch's default init: a smoke test of the real widths."""
    snac = import_snac()
    torch.set_num_threads(1)
    config = {**SMALL_32KHZ, "sampling_rate": 44100, "encoder_dim": 64, "decoder_dim": 1536, "codebook_size": 4096}
    torch.manual_seed(0)
    model = snac.SNAC(**config).eval()
    folder = _folder(tmp_path, config, model.state_dict(), "snac_44khz")
    ours, _ = pretrained_snac.load("snac_44khz", folder)
    assert (ours.config.hop_length, ours.pad_unit, ours.config.n_quantizers) == (3072, 12288, 4)
    audio = clips(44100)[1][:12000]
    with torch.no_grad():
        expected = model.encode(torch.from_numpy(audio)[None, None])
        rows = ours.quantize(ours.encode_latents(torch.from_numpy(audio)[None, None]), 4)
        assert rows.shape == (1, 15, 4) and equal_share(rows, levels_to_rows(expected)) >= 0.999
        reference_audio = reference_decode(model, expected, seed=1)
        decoded = ours.decode_latents(ours.dequantize(rows), torch.Generator().manual_seed(1))
    assert float((decoded - reference_audio).norm() / reference_audio.norm()) < 1e-4
