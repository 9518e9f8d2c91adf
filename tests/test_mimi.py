"""Mimi on rvqtool's modules gives the reference packages' codes and audio.

References: moshi's MimiModel (the original) and transformers' MimiModel, both built offline with
the same random, seeded weights (tests/mimi_reference.py): a narrower model of the same
architecture for most tests, the published size for two. Checked: codes at 1, 8 and 32 levels,
decoded audio, both published file layouts giving the same model, windows (with the left
context the model states) and streams (fed in any split, with state of a bounded size) giving
the whole input's latents, codes and audio, and files that are not Mimi checkpoints refused in
one line."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from rvqtool import UserError
from rvqtool.model.mimi import MimiCodecModel
from rvqtool.pretrained.mimi import load_mimi
from tests.mimi_reference import FULL, import_moshi, moshi_mimi, transformers_mimi
from tests.pretrained_reference import clips

import_moshi()
HOP = 1920


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("mimi")
    model, path = moshi_mimi(directory)
    audio = np.concatenate([c[: 24000 * 3] for c in clips(24000)])[: 9 * 24000 - 777]   # not whole frames
    return model, path, directory, audio


def _codes_share(ours: torch.Tensor, expected: torch.Tensor) -> float:
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    return float((ours == expected).float().mean())


@pytest.mark.parametrize("n_q", [1, 8, 32])
def test_codes_equal_moshi(reference, n_q):
    model, path, _, audio = reference
    ours, meta = load_mimi(path)
    assert ours.config.hop_length == HOP and ours.config.frame_rate == 12.5 and meta["name"] == "mimi"
    wav = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        model.set_num_codebooks(n_q)
        expected = model.encode(wav)
        latent = ours.encode_latents(wav)
        error = float((latent - model._encode_to_unquantized_latent(wav)).norm() / latent.norm())
        codes = ours.quantize(latent, n_q)
    share = _codes_share(codes, expected)
    distinct = min(len(torch.unique(level)) for level in expected[0])
    print(f"n_q={n_q}: {share:.5%} of {expected.numel()} codes equal moshi's; latent error {error:.1e}; "
          f"fewest distinct codes of a level {distinct}")
    assert codes.dtype == torch.int64 and codes.shape == (1, n_q, -(-len(audio) // HOP))
    assert share >= 0.999 and error < 1e-5
    assert distinct >= 20   # 113 frames, 64 codes: the codebooks are used, not one code everywhere


def test_decoded_audio_matches_moshi(reference):
    model, path, _, audio = reference
    ours, _ = load_mimi(path)
    with torch.no_grad():
        model.set_num_codebooks(32)
        codes = model.encode(torch.from_numpy(audio)[None, None])
        expected = model.decode(codes)
        decoded = ours.decode_latents(ours.dequantize(codes))
    error = float((decoded - expected).norm() / expected.norm())
    print(f"decode relative error {error:.2e}")
    assert decoded.shape == expected.shape == (1, 1, codes.shape[-1] * HOP) and error < 1e-5


def test_transformers_layout_gives_the_same_model_and_transformers_codes(reference):
    pytest.importorskip("transformers")
    model, path, directory, audio = reference
    reference_hf, folder = transformers_mimi(model, directory)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    from_moshi, _ = load_mimi(path)
    for spec in (folder, folder / "model.safetensors"):
        from_hf, meta = load_mimi(spec)
        assert from_hf.config == from_moshi.config and meta["name"] == "mimi"
        theirs = from_hf.state_dict()
        for name, tensor in from_moshi.state_dict().items():
            assert torch.equal(tensor, theirs[name]), name
    audio = audio[: len(audio) // HOP * HOP]   # transformers pads a partial last frame its own way
    wav = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        for n_q in (1, 8, 32):
            expected = reference_hf.encode(wav, num_quantizers=n_q).audio_codes
            share = _codes_share(from_moshi.quantize(from_moshi.encode_latents(wav), n_q), expected)
            print(f"n_q={n_q}: {share:.5%} of {expected.numel()} codes equal transformers'")
            assert share >= 0.999
        expected_audio = reference_hf.decode(expected).audio_values
        decoded = from_moshi.decode_latents(from_moshi.dequantize(expected))
    error = float((decoded - expected_audio).norm() / expected_audio.norm())
    print(f"decode relative error vs transformers {error:.2e}")
    assert error < 1e-5


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _short_context(model: MimiCodecModel, context: int) -> MimiCodecModel:
    """The same weights with a `context`-frame attention window, so that a few seconds of audio
    cross many attention blocks and go far past the stated context."""
    settings = {**model.config.extra["transformer"], "context": context}
    short = MimiCodecModel(dataclasses.replace(model.config, extra={**model.config.extra, "transformer": settings}))
    short.load_state_dict(model.state_dict())
    return short.eval()


def _windows(ours: MimiCodecModel, wav: torch.Tensor, codes: torch.Tensor, chunk: int, left: int,
             frames_left: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents and audio as a Codec computes them in windows: chunks of frames, each encoded with
    `left` samples before it and told its first frame, decoded with `frames_left` frames before it."""
    n_frames = codes.shape[-1]
    latents, audio = [], []
    for first in range(0, n_frames, chunk):
        start = max(0, first * HOP - left)
        window = ours.encode_latents(wav[..., start: (first + chunk) * HOP], first_frame=start // HOP)
        latents.append(window[..., first - start // HOP:])
        start = max(0, first - frames_left)
        decoded = ours.decode_latents(ours.dequantize(codes[..., start: first + chunk]), first_frame=start)
        audio.append(decoded[..., (first - start) * HOP:])
    return torch.cat(latents, dim=-1), torch.cat(audio, dim=-1)


def test_windows_with_the_stated_context_equal_the_whole_input(reference):
    """Windows with `encoder_context()` / `decoder_context()` before them give the whole input's
    latents, codes and audio, within float rounding (oneDNN's convs and MKL's products sum in an
    order that depends on the input's width, so not always bit for bit); with half that context
    they do not, so the context stated is needed. A 8-frame attention window, so that 9 s of
    audio are many times the context."""
    ours = _short_context(load_mimi(reference[1])[0], 8)
    left, right = ours.encoder_context()
    frames_left, frames_right = ours.decoder_context()
    assert right == 0 == frames_right and left % HOP == 0
    audio = np.concatenate(clips(24000))[: 9 * 24000 + 555]
    wav = torch.from_numpy(audio)[None, None]
    chunk = 12
    assert left < len(audio) - 3 * chunk * HOP   # most windows start well inside the input
    with torch.no_grad():
        whole = ours.encode_latents(wav)
        codes = ours.quantize(whole, 32)
        whole_audio = ours.decode_latents(ours.dequantize(codes))
        latents, audio = _windows(ours, wav, codes, chunk, left, frames_left)
        share = _codes_share(ours.quantize(latents, 32), codes)
        short_latents, short_audio = _windows(ours, wav, codes, chunk, left // 2 // HOP * HOP, frames_left // 2)
    errors = [_relative(latents, whole), _relative(audio, whole_audio)]
    short = [_relative(short_latents, whole), _relative(short_audio, whole_audio)]
    print(f"windows: latent error {errors[0]:.1e}, {share:.4%} of codes equal, audio error {errors[1]:.1e}; "
          f"with half the context {short[0]:.1e}, {short[1]:.1e}")
    assert max(errors) < 1e-5 and share >= 0.999
    assert min(short) > 1e-3


def _stream(stream, signal: torch.Tensor, sizes: list[int], step: int) -> tuple[torch.Tensor, list[int]]:
    """Feed `signal` [B, C, frames x step] to `stream` in pieces of `sizes` frames (cycled): the
    outputs joined, and the stream's state size after each feed."""
    outputs, states, first, i = [], [], 0, 0
    frames = signal.shape[-1] // step
    while first < frames:
        end = min(frames, first + sizes[i % len(sizes)])
        outputs.append(stream.feed(signal[..., first * step: end * step]))
        states.append(stream.state_numel())
        first, i = end, i + 1
    return torch.cat(outputs, dim=-1), states


def _pad_to_frames(audio: np.ndarray) -> torch.Tensor:
    """As a Codec feeds a stream: zeros up to whole frames (what `encode_latents` pads)."""
    return torch.from_numpy(np.pad(audio, (0, -len(audio) % HOP)))[None, None]


def _bounded(states: list[int]) -> bool:
    """The state grows while the attention window fills, then stays the same size."""
    final = states.index(max(states))
    return states == sorted(states) and all(s == states[-1] for s in states[final:])


@pytest.mark.parametrize("sizes", [[1], [7], [63], [1000], [3, 1, 10, 2]], ids=str)
def test_streams_in_any_split_equal_the_whole_input(reference, sizes):
    """Fed in any split, the encoder stream gives the whole input's latents and codes, and the
    decoder stream its audio, within float rounding: each piece is the same computation, but
    oneDNN's convs and MKL's matrix products sum in an order that depends on the input's width,
    so streamed values may differ from the whole pass's in the last bits (one feed: bit for bit).
    The state stops growing once the attention window is full: memory does not grow with the
    stream."""
    ours = _short_context(load_mimi(reference[1])[0], 8)
    audio = np.concatenate(clips(24000))[: 6 * 24000 + 555]
    with torch.no_grad():
        whole = ours.encode_latents(torch.from_numpy(audio)[None, None])
        codes = ours.quantize(whole, 32)
        latents = ours.dequantize(codes)
        whole_audio = ours.decode_latents(latents)
        streamed, encoder_states = _stream(ours.encoder_stream(1), _pad_to_frames(audio), sizes, HOP)
        streamed_codes = ours.quantize(streamed, 32)
        streamed_audio, decoder_states = _stream(ours.decoder_stream(1), latents, sizes, 1)
    share = _codes_share(streamed_codes, codes)
    latent_error, audio_error = _relative(streamed, whole), _relative(streamed_audio, whole_audio)
    print(f"split {sizes}: latent error {latent_error:.1e}, {share:.4%} of {codes.numel()} codes equal, "
          f"audio error {audio_error:.1e}; state {encoder_states[-1]} + {decoder_states[-1]} elements")
    assert streamed.shape == whole.shape and streamed_audio.shape == whole_audio.shape
    assert latent_error < 1e-5 and share >= 0.999 and audio_error < 1e-5
    assert _bounded(encoder_states) and _bounded(decoder_states)
    if len(encoder_states) == 1:   # one feed: the whole pass itself
        assert torch.equal(streamed, whole) and torch.equal(streamed_audio, whole_audio)
    if len(encoder_states) > 20:   # 8 frames of window at 25 Hz: full after 4 frames of codes
        assert encoder_states[4:] == encoder_states[-1:] * (len(encoder_states) - 4)


def test_a_stream_of_a_batch_gives_each_signal_its_own_codes(reference):
    """Two signals streamed together in 9-frame pieces: each one's codes and audio as alone."""
    ours, _ = load_mimi(reference[1])
    audio = np.concatenate(clips(24000))
    n = 4 * 24000 // HOP * HOP
    wav = torch.from_numpy(np.stack([audio[:n], audio[n:2 * n]]))[:, None]
    with torch.no_grad():
        latents, _ = _stream(ours.encoder_stream(2), wav, [9], HOP)
        decoded, _ = _stream(ours.decoder_stream(2), latents, [9], 1)
        for i in range(2):
            alone = ours.encode_latents(wav[i:i + 1])
            assert _codes_share(ours.quantize(latents[i:i + 1], 32), ours.quantize(alone, 32)) >= 0.999
            assert _relative(decoded[i:i + 1], ours.decode_latents(latents[i:i + 1])) < 1e-5


def test_a_stream_refuses_what_is_not_whole_frames(reference):
    ours, _ = load_mimi(reference[1])
    with pytest.raises(ValueError, match="k >= 1"):
        ours.encoder_stream(1).feed(torch.zeros(1, 1, HOP + 1))
    with pytest.raises(ValueError, match=r"\[2, 1,"):
        ours.encoder_stream(2).feed(torch.zeros(1, 1, HOP))
    with pytest.raises(ValueError, match="latents"):
        ours.decoder_stream(1).feed(torch.zeros(1, ours.config.dimension + 1, 2))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The published architecture (64 filters, 512 dims, 8 layers, 32 x 2048 codes) with random
    weights, moshi's model and ours; Gaussian codebooks at each level's scale (fitting 2048
    codes takes long)."""
    torch.set_num_threads(1)
    model, path = moshi_mimi(tmp_path_factory.mktemp("mimi_published"), FULL, fill=False)
    return model, load_mimi(path)[0]


def test_streams_at_the_published_size(published):
    """11 s (275 frames at 25 Hz: past the 250-frame attention window) streamed as a Codec would
    stream it, encoded in pieces of 20 and 3 frames (the whole input's codes at 32 levels) and
    decoded in pieces of 63 (5 s, a Codec's default chunk: its audio)."""
    _, ours = published
    audio = np.resize(np.concatenate(clips(24000)), 11 * 24000 - 777)
    with torch.no_grad():
        whole = ours.encode_latents(torch.from_numpy(audio)[None, None])
        codes = ours.quantize(whole, 32)
        streamed, states = _stream(ours.encoder_stream(1), _pad_to_frames(audio), [20, 3], HOP)
        share = _codes_share(ours.quantize(streamed, 32), codes)
        print(f"published size, streamed: {share:.4%} of {codes.numel()} codes equal, "
              f"latent error {_relative(streamed, whole):.1e}, state {states[-1]} elements")
        assert share >= 0.999 and _bounded(states)
        latents = ours.dequantize(codes)
        whole_audio = ours.decode_latents(latents)
        streamed_audio, states = _stream(ours.decoder_stream(1), latents, [63], 1)
    error = _relative(streamed_audio, whole_audio)
    print(f"published size: streamed audio error {error:.1e}, state {states[-1]} elements")
    assert error < 1e-5 and _bounded(states)


def test_the_published_size(published):
    """The published architecture (read off the file) against moshi."""
    model, ours = published
    config = ours.config
    assert (config.dimension, config.n_quantizers, config.codebook_size, config.hop_length) == (512, 32, 2048, HOP)
    assert config.extra["transformer"]["layers"] == 8 and config.extra["transformer"]["heads"] == 8
    audio = np.concatenate([c[24000 * 2: 24000 * 4] for c in clips(24000)])
    wav = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        model.set_num_codebooks(32)
        expected = model.encode(wav)
        codes = ours.quantize(ours.encode_latents(wav), 32)
        for n_q in (1, 8, 32):
            share = _codes_share(codes[:, :n_q], expected[:, :n_q])
            print(f"published size, n_q={n_q}: {share:.5%} of {expected[:, :n_q].numel()} codes equal")
            assert share >= 0.999
        expected_audio = model.decode(expected)
        error = float((ours.decode_latents(ours.dequantize(expected)) - expected_audio).norm() / expected_audio.norm())
    print(f"published size: decode relative error {error:.2e}; distinct level-0 codes {len(torch.unique(expected[0, 0]))}")
    assert error < 1e-5 and len(torch.unique(expected[0, 0])) >= 20


@pytest.mark.parametrize("content, fragment", [
    ("random", "not a Mimi checkpoint"),
    ("other", "not a Mimi checkpoint"),
    ("missing", "no tensor"),
    ("shape", "has shape"),
    ("hf_type", "not Mimi"),
    ("hf_no_config", "need the config.json"),
    ("nothing", "no such checkpoint"),
])
def test_files_that_are_not_mimi_checkpoints_are_refused(reference, tmp_path, content, fragment):
    from safetensors.torch import load_file, save_file

    _, path, directory, _ = reference
    state = load_file(str(path))
    bad = tmp_path / "bad.safetensors"
    if content == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    elif content == "other":
        save_file({"encoder.model.0.conv.conv.weight_g": torch.zeros(3)}, str(bad))
    elif content == "missing":
        del state["encoder_transformer.transformer.layers.0.norm1.weight"]
        save_file(state, str(bad))
    elif content == "shape":
        state["decoder.model.0.conv.conv.bias"] = torch.zeros(3)
        save_file(state, str(bad))
    elif content in ("hf_type", "hf_no_config"):
        pytest.importorskip("transformers")
        folder = directory / "kyutai-mimi"
        if not folder.exists():
            transformers_mimi(reference[0], directory)
        bad = tmp_path / "folder"
        bad.mkdir()
        (bad / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        if content == "hf_type":
            config = json.loads((folder / "config.json").read_text())
            (bad / "config.json").write_text(json.dumps({**config, "model_type": "encodec"}))
        else:
            bad = bad / "model.safetensors"
    else:
        bad = tmp_path / "absent.safetensors"
    with pytest.raises(UserError, match=fragment) as info:
        load_mimi(bad)
    assert "\n" not in str(info.value)
