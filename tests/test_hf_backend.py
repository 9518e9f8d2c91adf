"""hf:DIR — transformers' own codecs behind rvqtool's model interface.

Tiny random-weight models are built offline from a transformers config and saved with
`save_pretrained`; codebooks are filled from real latents (transformers initialises Mimi's and
EnCodec's to zeros, which would make every code 0). What is checked: codes and audio equal to
calling the transformers model directly, a batch equal to its rows alone, windows with the
declared context equal to the whole input, and the refusals.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from rvqtool.errors import UserError  # noqa: E402
from rvqtool.pretrained.hf import FAMILIES, folder_sha256, load_hf  # noqa: E402


def _audio(batch: int, channels: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / length
    tones = torch.sin(2 * torch.pi * (3 + 40 * torch.rand(batch, channels, 1, generator=generator)) * t * 8)
    return 0.5 * tones + 0.1 * torch.randn(batch, channels, length, generator=generator)


def _fill_codebooks(layers, residual: torch.Tensor, set_entries) -> None:
    """Each level's entries: frames of the residual it sees, so codes spread over the codebook."""
    generator = torch.Generator().manual_seed(1)
    for layer in layers:
        frames = residual.transpose(1, 2).reshape(-1, residual.shape[1])
        size = layer.codebook.codebook_size
        set_entries(layer.codebook, frames[torch.randint(len(frames), (size,), generator=generator)])
        residual = residual - layer.decode(layer.encode(residual))


def _mimi(folder: Path) -> Path:
    torch.manual_seed(0)
    config = transformers.MimiConfig(
        hidden_size=32, num_filters=4, upsampling_ratios=[4, 4, 3, 2], num_hidden_layers=2, intermediate_size=64,
        num_attention_heads=2, num_key_value_heads=2, codebook_size=64, codebook_dim=16,
        vector_quantization_hidden_dimension=16, num_quantizers=4, upsample_groups=32, sliding_window=10)
    model = transformers.MimiModel(config).eval()

    def set_entries(codebook, entries):
        codebook.embed_sum.copy_(entries)
        codebook.cluster_usage.fill_(1.0)
        codebook._embed = None

    with torch.no_grad():
        latents = model.encoder(_audio(2, 1, 192 * 64, seed=5)).latents
        for rvq in (model.quantizer.semantic_residual_vector_quantizer, model.quantizer.acoustic_residual_vector_quantizer):
            _fill_codebooks(rvq.layers, rvq.input_proj(latents), set_entries)
    model.save_pretrained(folder)
    return folder


def _dac(folder: Path) -> Path:
    torch.manual_seed(0)
    config = transformers.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 2, 2], decoder_hidden_size=16,
                                    n_codebooks=3, codebook_size=32, codebook_dim=4, hidden_size=32,
                                    sampling_rate=16000)
    transformers.DacModel(config).eval().save_pretrained(folder)   # random codebooks already spread
    return folder


def _encodec(folder: Path) -> Path:
    torch.manual_seed(0)
    config = transformers.EncodecConfig(num_filters=4, upsampling_ratios=[4, 2], hidden_size=16, codebook_size=32,
                                        target_bandwidths=[10.0, 20.0], sampling_rate=8000, num_lstm_layers=1)
    model = transformers.EncodecModel(config).eval()

    def set_entries(codebook, entries):
        codebook.embed.copy_(entries)
        codebook.embed_avg.copy_(entries)

    with torch.no_grad():
        _fill_codebooks(model.quantizer.layers, model.encoder(_audio(2, 1, 8 * 64, seed=5)), set_entries)
    model.save_pretrained(folder)
    return folder


def _xcodec(folder: Path) -> Path:
    """A HuBERT of one layer beside a DAC encoder, both 320 samples per frame as the real one."""
    torch.manual_seed(0)
    dac = {"encoder_hidden_size": 4, "downsampling_ratios": [8, 5, 4, 2], "upsampling_ratios": [8, 5, 4, 2],
           "decoder_hidden_size": 16, "hidden_size": 16}
    hubert = {"model_type": "hubert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 32, "conv_dim": [8] * 7, "num_conv_pos_embeddings": 16,
              "num_conv_pos_embedding_groups": 2}
    config = transformers.XcodecConfig(target_bandwidths=[0.6, 1.2], codebook_size=64, acoustic_model_config=dac,
                                       semantic_model_config=hubert)
    model = transformers.XcodecModel(config).eval()
    seen = []
    encode = model.quantizer.encode
    model.quantizer.encode = lambda embeddings, bandwidth=None: seen.append(embeddings) or encode(embeddings, bandwidth)

    def set_entries(codebook, entries):
        codebook.embed.copy_(entries)
        codebook.embed_avg.copy_(entries)

    with torch.no_grad():
        model.encode(_audio(2, 1, 320 * 64, seed=5))          # the quantizer's input: what its codebooks fit
        _fill_codebooks(model.quantizer.quantizers, seen[0], set_entries)
    del model.quantizer.encode
    model.save_pretrained(folder)
    return folder


BUILDERS = {"mimi": _mimi, "dac": _dac, "encodec": _encodec, "xcodec": _xcodec}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def saved(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def _codes(model, wav: torch.Tensor, n_q: int) -> torch.Tensor:
    with torch.inference_mode():
        return model.quantize(model.encode_latents(wav), n_q)


def _reference_codes(kind: str, hf, wav: torch.Tensor, n_q: int) -> torch.Tensor:
    """What the transformers model's own encode gives."""
    with torch.inference_mode():
        if kind == "mimi":
            return hf.encode(wav, num_quantizers=n_q).audio_codes
        if kind == "dac":
            return hf.encode(wav, n_quantizers=n_q).audio_codes
        bandwidth = n_q * hf.config.frame_rate * hf.config.codebook_nbits / 1000   # one of its bandwidths
        if kind == "xcodec":
            return hf.encode(wav, bandwidth=bandwidth).audio_codes
        return hf.encode(wav, bandwidth=bandwidth).audio_codes[0]


def _reference_audio(kind: str, hf, codes: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        if kind == "mimi":
            return hf.decode(codes).audio_values
        if kind == "dac":
            return hf.decode(audio_codes=codes).audio_values[:, None]
        if kind == "xcodec":
            return hf.decode(codes).audio_values
        return hf.decode(codes[None], [None]).audio_values


def test_meta_and_config(saved):
    kind, folder = saved
    model, meta = load_hf(folder)
    assert meta == {"name": f"hf:{kind}", "sha256": folder_sha256(folder)}
    hf_config = model.hf.config
    assert model.config.hop_length == {"mimi": 192, "dac": 8, "encodec": 8, "xcodec": 320}[kind]
    assert model.config.n_quantizers == {"mimi": 4, "dac": 3, "encodec": 4, "xcodec": 4}[kind]
    assert model.config.codebook_size == hf_config.codebook_size
    # EnCodec's LSTM and X-Codec's HuBERT see the whole input
    assert model.whole_input == (kind in ("encodec", "xcodec"))


def test_codes_and_audio_equal_transformers(saved):
    kind, folder = saved
    model, _ = load_hf(folder)
    wav = _audio(1, 1, model.config.hop_length * 40)
    levels = {"mimi": (1, 2, 4), "dac": (1, 3), "encodec": (2, 4), "xcodec": (2, 4)}[kind]   # EnCodec, X-Codec: their bandwidths
    for n_q in levels:
        codes = _codes(model, wav, n_q)
        assert codes.dtype == torch.int64 and codes.shape == (1, n_q, 40)
        assert torch.equal(codes, _reference_codes(kind, model.hf, wav, n_q))
    assert len(torch.unique(codes[0, 0])) > 3                              # codes vary: the test can fail
    with torch.inference_mode():
        audio = model.decode_latents(model.dequantize(codes))
    assert torch.allclose(audio, _reference_audio(kind, model.hf, codes), atol=1e-6)


def test_any_level_count_is_a_prefix(saved):
    """Fewer levels are the first levels of more: what --n-q relies on (EnCodec included, although
    transformers offers it only at its bandwidths)."""
    kind, folder = saved
    model, _ = load_hf(folder)
    wav = _audio(1, 1, model.config.hop_length * 24)
    full = _codes(model, wav, model.config.n_quantizers)
    for n_q in range(1, model.config.n_quantizers):
        assert torch.equal(_codes(model, wav, n_q), full[:, :n_q])


def test_batch_equals_alone(saved):
    kind, folder = saved
    model, _ = load_hf(folder)
    wav = _audio(3, 1, model.config.hop_length * 30, seed=2)
    batched = _codes(model, wav, model.config.n_quantizers)
    for row in range(3):
        assert torch.equal(batched[row:row + 1], _codes(model, wav[row:row + 1], model.config.n_quantizers))


@pytest.mark.parametrize("kind", ["mimi", "dac"])
def test_windows_with_declared_context_equal_whole(kind, tmp_path):
    model, _ = load_hf(BUILDERS[kind](tmp_path))
    hop, n_q, frames = model.config.hop_length, model.config.n_quantizers, 60
    left, right = model.encoder_context()
    wav = _audio(1, 1, hop * frames, seed=3)
    whole = _codes(model, wav, n_q)

    def window(first: int, end: int, left: int, right: int) -> torch.Tensor:
        start, stop = max(0, first * hop - left), min(frames * hop, end * hop + right)
        with torch.inference_mode():
            latents = model.encode_latents(wav[..., start:stop])
            return model.quantize(latents[..., first - start // hop: end - start // hop], n_q)

    for first, end in ((0, 10), (25, 35), (50, 60)):
        assert torch.equal(window(first, end, left, right), whole[..., first:end])
    assert not torch.equal(window(25, 35, 0, 0), whole[..., 25:35])   # without context they differ

    left, right = model.decoder_context()
    with torch.inference_mode():
        audio = model.decode_latents(model.dequantize(whole))
        start, stop = max(0, 25 - left), 35 + right
        part = model.decode_latents(model.dequantize(whole[..., start:stop]))
    kept, expected = part[..., (25 - start) * hop: (35 - start) * hop], audio[..., 25 * hop: 35 * hop]
    assert torch.allclose(kept, expected, rtol=0, atol=1e-5 * float(audio.abs().max()))   # float rounding


def test_identity_follows_the_weights(tmp_path):
    first = _dac(tmp_path / "a")
    second = tmp_path / "b"
    torch.manual_seed(7)
    transformers.DacModel(transformers.DacConfig.from_pretrained(first)).save_pretrained(second)
    assert load_hf(first)[1]["sha256"] != load_hf(second)[1]["sha256"]
    assert load_hf(first)[1]["sha256"] == folder_sha256(first)


def test_refusals(tmp_path):
    with pytest.raises(UserError, match="not a transformers model folder"):
        load_hf(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a transformers model folder"):
        load_hf(tmp_path / "plain")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="model type 'bert' is not an audio codec .*supported: " + ", ".join(sorted(FAMILIES))):
        load_hf(bert)
    empty = tmp_path / "empty"
    transformers.DacConfig().save_pretrained(empty)
    with pytest.raises(UserError, match="no weights beside config.json"):
        load_hf(empty)
    broken = tmp_path / "broken"
    transformers.DacConfig().save_pretrained(broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="transformers cannot load this dac model"):
        load_hf(broken)
    stereo = tmp_path / "encodec48"
    config = transformers.EncodecConfig(num_filters=4, upsampling_ratios=[4, 2], hidden_size=16, codebook_size=32,
                                        target_bandwidths=[10.0], sampling_rate=8000, normalize=True)
    transformers.EncodecModel(config).save_pretrained(stereo)
    with pytest.raises(UserError, match="per-chunk scales"):
        load_hf(stereo)


def test_without_transformers_one_line(tmp_path, monkeypatch):
    folder = _dac(tmp_path / "dac")
    monkeypatch.setitem(sys.modules, "transformers", None)        # what an install without the extra sees
    with pytest.raises(UserError, match=r"need the transformers package: pip install 'rvqtool\[hf\]'"):
        load_hf(folder)
