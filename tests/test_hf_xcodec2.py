"""hf:DIR for XCodec2 (Llasa's codec) and NeuCodec (NeuTTS's): features from their feature
extractors, one FSQ level.

Tiny random models (XCodec2 and NeuCodec) and their feature extractors are saved with `save_pretrained`; its
project_in is scaled up so that the FSQ levels are not all at their midpoint (random init puts
every code at one value). What is checked: codes and audio equal to the transformers model's own
encode (features from its extractor) and decode, a batch equal to its rows alone, the feature
extractor's config in the identity, the refusals, and `rvq tokenize --preset llasa` on it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

transformers = pytest.importorskip("transformers")
try:
    import torchaudio.compliance.kaldi  # noqa: F401 -- the feature extractors' fbank
except Exception as exc:  # noqa: BLE001 -- a torchaudio built for another torch raises OSError
    pytest.skip(f"torchaudio unusable: {exc}", allow_module_level=True)

from rvqtool.errors import UserError  # noqa: E402
from rvqtool.pretrained.hf import folder_sha256, load_hf  # noqa: E402

HOP = 320


def _audio(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    tones = torch.sin(2 * torch.pi * (100 + 900 * torch.rand(batch, 1, 1, generator=generator)) * t)
    return 0.5 * tones + 0.1 * torch.randn(batch, 1, length, generator=generator)


W2V_BERT = {"model_type": "wav2vec2-bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "output_hidden_size": 16, "conv_depthwise_kernel_size": 3,
            "feature_projection_input_dim": 160}


def _xcodec2(folder: Path, kind: str = "Xcodec2") -> Path:
    """`kind` "NeuCodec" builds a NeuCodec: the same modules but its decoder's rate."""
    torch.manual_seed(0)
    config = getattr(transformers, f"{kind}Config")(
        hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
        head_dim=8, encoder_hidden_size=4, semantic_model_config=W2V_BERT, quantization_dim=48)
    model = getattr(transformers, f"{kind}Model")(config).eval()
    with torch.no_grad():
        model.quantizer.project_in.weight.mul_(1e4)   # its input is ~1e-3: FSQ levels spread at ~1
    model.save_pretrained(folder)
    getattr(transformers, f"{kind}FeatureExtractor")(hop_length=HOP).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _xcodec2(tmp_path_factory.mktemp("xcodec2"))


def _codes(model, wav: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.quantize(model.encode_latents(wav), 1)


def _reference_codes(folder: Path, hf, wav: torch.Tensor, kind: str = "Xcodec2") -> torch.Tensor:
    """The documented path: the feature extractor's inputs into the model's encode."""
    features = getattr(transformers, f"{kind}FeatureExtractor").from_pretrained(folder)
    inputs = features([row.numpy() for row in wav[:, 0]], sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        return hf.encode(**inputs).audio_codes


def test_meta_and_config(folder):
    model, meta = load_hf(folder)
    assert meta == {"name": "hf:xcodec2", "sha256": folder_sha256(folder, with_features=True)}
    assert meta["sha256"] != folder_sha256(folder)                      # the features' config counts
    assert (model.config.hop_length, model.config.n_quantizers, model.config.codebook_size) == (HOP, 1, 65536)
    assert model.whole_input


@pytest.mark.parametrize("length", [HOP * 40, HOP * 40 - 77])
def test_codes_and_audio_equal_transformers(folder, length):
    model, _ = load_hf(folder)
    wav = _audio(1, length)
    codes = _codes(model, wav)
    assert codes.dtype == torch.int64 and codes.shape == (1, 1, 40)
    reference = _reference_codes(folder, model.hf, wav)
    # whole frames get one frame of padding alone from the extractor: rvqtool keeps the 40 before it
    assert reference.shape[-1] == (41 if length % HOP == 0 else 40)
    assert torch.equal(codes, reference[..., :40].long())
    assert len(torch.unique(codes)) > 5                                  # codes vary: the test can fail
    with torch.inference_mode():
        audio = model.decode_latents(model.dequantize(codes))
        expected = model.hf.decode(codes).audio_values
    assert audio.shape == (1, 1, 40 * HOP)
    assert torch.allclose(audio, expected, atol=1e-6)


def test_batch_equals_alone(folder):
    model, _ = load_hf(folder)
    wav = _audio(2, HOP * 12, seed=2)
    batched = _codes(model, wav)
    assert not torch.equal(batched[0], batched[1])
    for row in range(2):
        assert torch.equal(batched[row:row + 1], _codes(model, wav[row:row + 1]))


def test_identity_follows_the_feature_extractor(folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for path in folder.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    config = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**config, "padding_value": 0.5}))
    assert load_hf(other)[1]["sha256"] != load_hf(folder)[1]["sha256"]


def test_refusals(folder, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(UserError, match="no preprocessor_config.json beside config.json: a xcodec2 model needs"):
        load_hf(bare)
    transformers.Xcodec2FeatureExtractor(hop_length=HOP // 2).save_pretrained(bare)
    with pytest.raises(UserError, match="is for 16000 Hz and 160 samples a frame, the xcodec2 model for 16000 Hz "
                                        "and 320"):
        load_hf(bare)


def test_without_torchaudio_one_line(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchaudio", None)          # what an install without it sees
    with pytest.raises(UserError, match="feature extractor needs torchaudio"):
        load_hf(folder)


def test_tokenize_preset_llasa(folder, tmp_path, rvq):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        soundfile.write(corpus / f"{i}.wav", (0.3 * rng.standard_normal(HOP * 15 + 11 * i)).astype(np.float32), 16000)
    res = rvq("tokenize", str(corpus), "-o", str(tmp_path / "out"), "--preset", "llasa", "--model", f"hf:{folder}",
              cwd=tmp_path)
    assert res.rc == 0, res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["n_documents"], manifest["n_failed"]) == (2, 0)
    assert manifest["n_tokens"] == 15 + 16 + 2 * 2                      # each file's frames, BOS and EOS


@pytest.fixture(scope="module")
def neucodec(tmp_path_factory) -> Path:
    return _xcodec2(tmp_path_factory.mktemp("neucodec"), "NeuCodec")


def test_neucodec_codes_equal_transformers(neucodec):
    model, meta = load_hf(neucodec)
    assert meta == {"name": "hf:neucodec", "sha256": folder_sha256(neucodec, with_features=True)}
    assert (model.config.sample_rate, model.config.hop_length, model.config.codebook_size) == (16000, HOP, 65536)
    wav = _audio(2, HOP * 30, seed=4)
    codes = _codes(model, wav)
    assert codes.shape == (2, 1, 30) and len(torch.unique(codes)) > 5
    assert torch.equal(codes, _reference_codes(neucodec, model.hf, wav, "NeuCodec").long())
    for row in range(2):
        assert torch.equal(codes[row:row + 1], _codes(model, wav[row:row + 1]))


def test_neucodec_pads_a_partial_frame(neucodec):
    """NeuCodec's encode drops a partial last frame; rvqtool codes it, as the input padded with zeros."""
    model, _ = load_hf(neucodec)
    wav = _audio(1, HOP * 30 - 77, seed=4)
    codes = _codes(model, wav)
    assert _reference_codes(neucodec, model.hf, wav, "NeuCodec").shape[-1] == 29
    padded = torch.nn.functional.pad(wav, (0, 77))
    assert torch.equal(codes, _reference_codes(neucodec, model.hf, padded, "NeuCodec").long())


def test_neucodec_decode_refused(neucodec):
    model, _ = load_hf(neucodec)
    with pytest.raises(UserError, match="NeuCodec decodes to 24 kHz, its codes are at 16 kHz"):
        model.decode_latents(model.dequantize(torch.zeros(1, 1, 4, dtype=torch.int64)))


def test_tokenize_preset_neutts(neucodec, tmp_path, rvq):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    noise = 0.3 * np.random.default_rng(0).standard_normal(HOP * 15 + 11)
    soundfile.write(corpus / "0.wav", noise.astype(np.float32), 16000)
    res = rvq("tokenize", str(corpus), "-o", str(tmp_path / "out"), "--preset", "neutts", "--model", f"hf:{neucodec}",
              cwd=tmp_path)
    assert res.rc == 0, res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["n_documents"], manifest["n_tokens"]) == (1, 16)   # the codes alone, without a tokenizer
