"""hf:DIR for XCodec2 (Llasa's codec) and NeuCodec (NeuTTS's): features from their feature
extractors, one FSQ level.

Tiny random models (XCodec2 and NeuCodec) and their feature extractors are saved with `save_pretrained`; its
project_in is scaled up so that the FSQ levels are not all at their midpoint (random init puts
every code at one value). What is checked: codes and audio equal to the transformers model's own
encode (features from its extractor) and decode, a batch equal to its rows alone, the feature
extractor's config in the identity, the refusals, NeuCodec's whole frames and its 24 kHz decode
(code files, `rvq decode/info/eval`), and `rvq tokenize --preset llasa/neutts` on them.

The feature extractors call torchaudio's kaldi fbank (pure Python); `make setup` installs a
torchaudio that imports as pure Python on this CPU torch (see the Makefile), so these run in CI.
"""
from __future__ import annotations

import dataclasses
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

from rvqtool.codec import load_codec  # noqa: E402
from rvqtool.errors import UserError  # noqa: E402
from rvqtool.io.codes import check_shape, load_codes, save_codes  # noqa: E402
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
    with pytest.raises(UserError, match="feature extractor needs torchaudio: pip install --no-deps torchaudio"):
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


@pytest.fixture(scope="module")
def neucodec_codec(neucodec):
    return load_codec(f"hf:{neucodec}")


def test_neucodec_codes_whole_frames_as_its_reference(neucodec, neucodec_codec):
    """NeuCodec's encode codes whole frames only; rvqtool gives its codes of the very input, and a
    code file covering those frames."""
    codec = neucodec_codec
    for cut in (77, HOP - 1):
        wav = _audio(1, HOP * 30 - cut, seed=4)
        codes = codec.encode(wav[0, 0].numpy())
        reference = _reference_codes(neucodec, codec.model.hf, wav, "NeuCodec").long()
        assert reference.shape[-1] == 29
        assert torch.equal(torch.from_numpy(codes.codes), reference)
        assert (codes.meta.length, codes.meta.sample_rate, codes.meta.output_sample_rate) == (29 * HOP, 16000, 24000)
    with pytest.raises(UserError, match="NeuCodec codes whole frames only: the audio is shorter than one frame"):
        codec.encode(wav[0, 0, :HOP - 1].numpy())


def test_neucodec_decodes_24khz_as_transformers(neucodec_codec, folder, tmp_path):
    codec = neucodec_codec
    assert (codec.sample_rate, codec.output_sample_rate, codec.output_hop_length) == (16000, 24000, 480)
    codes = codec.encode(_audio(1, HOP * 25, seed=5)[0, 0].numpy())
    audio = codec.decode(codes)
    with torch.inference_mode():
        expected = codec.model.hf.decode(torch.from_numpy(codes.codes)).audio_values[0].numpy()
    assert audio.shape == expected.shape == (1, 25 * 480)
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-6)
    save_codes(codes, tmp_path / "c.rvq")                                # the packed format keeps the rate too
    assert load_codes(tmp_path / "c.rvq").meta == codes.meta
    for rate in (-1, 24010):                                             # 24010: 480.2 samples a frame
        with pytest.raises(UserError, match="metadata must give an output sample rate of whole samples per frame"):
            check_shape(dataclasses.replace(codes.meta, output_sample_rate=rate), codes.codes.shape, "c")
    # a model that decodes at its own rate writes no such key: its code files stay as they were
    xcodec2 = load_codec(f"hf:{folder}")
    assert xcodec2.output_sample_rate == 16000
    assert "output_sample_rate" not in xcodec2.encode(np.zeros(HOP * 3, np.float32)).meta.to_dict()


def test_neucodec_cli_encode_info_decode_eval(neucodec, neucodec_codec, tmp_path, rvq):
    wav = _audio(1, HOP * 20 - 77, seed=6)[0, 0].numpy()
    soundfile.write(tmp_path / "in.wav", wav, 16000, subtype="FLOAT")
    assert rvq("encode", "in.wav", "-o", "in.npy", "--model", f"hf:{neucodec}", cwd=tmp_path).rc == 0
    sidecar = json.loads((tmp_path / "in.npy.json").read_text())
    assert (sidecar["sample_rate"], sidecar["output_sample_rate"], sidecar["length"]) == (16000, 24000, 19 * HOP)
    info = rvq("info", "in.npy", "--json", cwd=tmp_path)
    assert info.rc == 0, info.stderr
    facts = json.loads(info.stdout)
    assert (facts["sample_rate"], facts["output_sample_rate"], facts["frames"]) == (16000, 24000, 19)
    facts = json.loads(rvq("info", f"hf:{neucodec}", "--json", cwd=tmp_path).stdout)
    assert (facts["sample_rate"], facts["output_sample_rate"], facts["windows"]) == (16000, 24000, "whole input")
    res = rvq("decode", "in.npy", "-o", "out.wav", cwd=tmp_path)        # the model from the codes' record
    assert res.rc == 0, res.stderr
    audio, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    with torch.inference_mode():
        expected = neucodec_codec.model.hf.decode(torch.from_numpy(np.load(tmp_path / "in.npy"))[None]).audio_values
    assert rate == 24000 and audio.shape == (19 * 480,)
    np.testing.assert_allclose(audio, expected[0, 0].clamp(-1, 1).numpy(), rtol=0, atol=1 / 32768 + 1e-6)  # PCM_16
    res = rvq("eval", "in.wav", "--model", f"hf:{neucodec}", "--metrics", "si_sdr,mel", "-o", "r.json",
              cwd=tmp_path)
    assert res.rc == 0, res.stderr
    row, = json.loads((tmp_path / "r.json").read_text())["files"]
    assert np.isfinite(row["si_sdr"]) and np.isfinite(row["mel"])
    del sidecar["output_sample_rate"]                                   # metadata that lies about the rate
    (tmp_path / "in.npy.json").write_text(json.dumps(sidecar))
    res = rvq("decode", "in.npy", "-o", "lie.wav", cwd=tmp_path)
    assert res.rc == 1 and res.err_lines == [
        "error: in.npy: its metadata says they decode to 16000 Hz, model 'hf:neucodec' decodes to 24000 Hz"]


def test_tokenize_preset_neutts(neucodec, neucodec_codec, tmp_path, rvq):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    noise = 0.3 * np.random.default_rng(0).standard_normal(HOP * 15 + 11)
    soundfile.write(corpus / "0.wav", noise.astype(np.float32), 16000)
    res = rvq("tokenize", str(corpus), "-o", str(tmp_path / "out"), "--preset", "neutts", "--model", f"hf:{neucodec}",
              cwd=tmp_path)
    assert res.rc == 0, res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["n_documents"], manifest["n_tokens"]) == (1, 15)   # whole frames' codes, no tokenizer
    assert json.loads((tmp_path / "out" / "plan.json").read_text())["files"][0]["frames"] == 15   # planned so
    # tokens -> codes -> 24 kHz audio: the decode of the file's own codes
    assert rvq("detokenize", "out", "--doc", "0", "-o", "back.wav", "--model", f"hf:{neucodec}", cwd=tmp_path).rc == 0
    back, rate = soundfile.read(tmp_path / "back.wav", dtype="float32")
    direct = neucodec_codec.decode(neucodec_codec.encode_file(corpus / "0.wav"))[0]
    assert rate == 24000 and back.shape == direct.shape == (15 * 480,)
    np.testing.assert_allclose(back, np.clip(direct, -1, 1), rtol=0, atol=1 / 32768 + 1e-6)   # PCM_16
