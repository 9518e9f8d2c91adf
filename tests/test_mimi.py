"""Mimi on rvqtool's modules gives the reference packages' codes and audio.

References: moshi's MimiModel (the original) and transformers' MimiModel, both built offline with
the same random, seeded weights (tests/mimi_reference.py): a narrower model of the same
architecture for most tests, the published size for one. Checked: codes at 1, 8 and 32 levels,
decoded audio, both published file layouts giving the same model, windows (with the left
context the model states) giving the whole input's latents, codes and audio exactly, and files
that are not Mimi checkpoints refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rvqtool import UserError
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


def test_windows_with_the_stated_context_equal_the_whole_input(reference):
    """As rvqtool's Codec windows a file: chunks of frames, each encoded with `encoder_context()`
    samples before it and told its first frame; decoded likewise with `decoder_context()`."""
    _, path, _, _ = reference
    ours, _ = load_mimi(path)
    left, right = ours.encoder_context()
    frames_left, frames_right = ours.decoder_context()
    assert right == 0 == frames_right and left % HOP == 0
    audio = np.concatenate([np.concatenate(clips(24000))] * 4)[: 62 * 24000 + 555]   # > the context
    wav = torch.from_numpy(audio)[None, None]
    n_frames, chunk = -(-len(audio) // HOP), 150
    assert left < len(audio) - chunk * HOP
    with torch.no_grad():
        whole = ours.encode_latents(wav)
        whole_codes = ours.quantize(whole, 32)
        parts = []
        for first in range(0, n_frames, chunk):
            start = max(0, first * HOP - left)
            window = ours.encode_latents(wav[..., start: (first + chunk) * HOP], first_frame=start // HOP)
            parts.append(window[..., first - start // HOP:])
        windowed = torch.cat(parts, dim=-1)
        assert torch.equal(windowed, whole)
        assert torch.equal(ours.quantize(windowed, 32), whole_codes)
        whole_audio = ours.decode_latents(ours.dequantize(whole_codes))
        pieces = []
        for first in range(0, n_frames, chunk):
            start = max(0, first - frames_left)
            decoded = ours.decode_latents(ours.dequantize(whole_codes[..., start: first + chunk]), first_frame=start)
            pieces.append(decoded[..., (first - start) * HOP:])
        assert torch.equal(torch.cat(pieces, dim=-1), whole_audio)


def test_the_published_size(tmp_path):
    """The published architecture (read off the file: 64 filters, 512 dims, 8 layers, 32 x 2048
    codes) against moshi; Gaussian codebooks at each level's scale (fitting 2048 codes takes long)."""
    torch.set_num_threads(1)
    model, path = moshi_mimi(tmp_path, FULL, fill=False)
    ours, _ = load_mimi(path)
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
