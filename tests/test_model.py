"""Model shapes, the windowing that makes long-file codes equal whole-file codes, and the
inference path = the modules within rounding."""
import numpy as np
import pytest
import torch

from rvqtool.codec import Codec
from rvqtool.config import CodecConfig
from rvqtool.model.native import NativeCodecModel
from tests.audio import tone

TINY = dict(encoder_filters=4, decoder_filters=4, dimension=16, n_quantizers=4, codebook_size=32)


def tiny_codec(chunk_seconds: float, **overrides) -> Codec:
    torch.manual_seed(0)
    model = NativeCodecModel(CodecConfig(**{**TINY, **overrides}))
    model.quantizer.init_from_latents(torch.randn(512, model.config.dimension) * 0.05)
    meta = {"name": "tiny", "sha256": "0" * 64}
    return Codec(model, meta, __import__("pathlib").Path("tiny.safetensors"), torch.device("cpu"), chunk_seconds)


@pytest.mark.parametrize("causal", [False, True])
def test_lengths_are_exact_multiples_of_the_hop(causal):
    model = NativeCodecModel(CodecConfig(**TINY, causal=causal)).eval()
    hop = model.config.hop_length
    for frames in (1, 2, 7):
        with torch.no_grad():
            latent = model.encoder(torch.randn(2, 1, frames * hop))
            assert latent.shape == (2, 16, frames)
            assert model.decoder(latent).shape == (2, 1, frames * hop)


def test_context_bounds_cover_the_receptive_field():
    """Changing input outside [t·hop - context, (t+1)·hop + context) must not change frame t."""
    model = NativeCodecModel(CodecConfig(**TINY)).eval()
    hop, context = model.config.hop_length, model.encoder.context_samples()
    x = torch.randn(1, 1, 40 * hop)
    t = 20
    y = x.clone()
    y[..., : t * hop - context] = torch.randn(t * hop - context)
    y[..., (t + 1) * hop + context:] = 0
    with torch.no_grad():
        assert torch.equal(model.encoder(x)[..., t], model.encoder(y)[..., t])
    frames = model.decoder.context_frames()
    z = torch.randn(1, 16, 40)
    w = z.clone()
    w[..., : t - frames] = 0
    w[..., t + 1 + frames:] = 0
    with torch.no_grad():
        a, b = model.decoder(z), model.decoder(w)
    assert torch.allclose(a[..., t * hop:(t + 1) * hop], b[..., t * hop:(t + 1) * hop], atol=1e-6)


def test_lstm_models_report_unbounded_context():
    model = NativeCodecModel(CodecConfig(**TINY, lstm_layers=1))
    assert model.encoder.context_samples() is None and model.decoder.context_frames() is None


@pytest.mark.parametrize("seconds", [0.004, 0.5, 3.3])
def test_windowed_codes_equal_whole_input_codes(seconds):
    x = tone(seconds, seed=3)
    whole = tiny_codec(chunk_seconds=600).encode(x)
    windowed = tiny_codec(chunk_seconds=0.1).encode(x)
    assert windowed.codes.shape == whole.codes.shape == (1, 4, -(-len(x) // 320))
    np.testing.assert_array_equal(windowed.codes, whole.codes)


def test_streamed_blocks_of_any_size_give_the_same_codes():
    x = tone(2.0, seed=4)[None]
    codec = tiny_codec(chunk_seconds=0.2)
    whole = codec.encode(x)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, x.shape[1]), 9, replace=False))
    blocks = np.split(x, cuts, axis=1)
    streamed = codec.encode_blocks(blocks, None, "mono", 24000)
    np.testing.assert_array_equal(streamed.codes, whole.codes)


def test_windowed_decode_matches_whole_decode():
    x = tone(2.0, seed=5)
    codes = tiny_codec(chunk_seconds=600).encode(x)
    whole = tiny_codec(chunk_seconds=600).decode(codes)
    windowed = tiny_codec(chunk_seconds=0.1).decode(codes)
    assert whole.shape == (1, len(x))
    np.testing.assert_allclose(windowed, whole, atol=1e-5)


@pytest.mark.parametrize("overrides", [
    dict(encoder_filters=16, decoder_filters=32),                      # the shipped model's shapes
    dict(causal=True, channels=2, n_residual_layers=2, ratios=[4, 3, 2]),
    dict(lstm_layers=1, residual_kernel_size=5, compress=4),
])
def test_inference_path_equals_the_modules_within_rounding(overrides):
    """Encode and decode with grad off (the time-major path of seanet_inference) give the
    channels-first modules' latents and audio within float rounding, also after the weights
    change (packed weights are not kept past a parameter update)."""
    torch.manual_seed(1)
    model = NativeCodecModel(CodecConfig(**{**TINY, **overrides})).eval()
    channels, hop = model.config.channels, model.config.hop_length
    wav = torch.randn(2, channels, 6 * hop) * 0.3
    for step in range(2):
        with torch.no_grad():
            latents = model.encode_latents(wav)
            audio = model.decode_latents(latents)
        with torch.enable_grad():
            expected_latents = model.encoder(wav).detach()
            expected_audio = model.decoder(expected_latents).detach()
        assert latents.shape == expected_latents.shape and audio.shape == expected_audio.shape == wav.shape
        for ours, theirs in ((latents, expected_latents), (audio, expected_audio)):
            assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max() + 1e-7
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("weight_v"):
                    parameter.mul_(1 + 0.5 * torch.rand_like(parameter))


ISTFT = dict(decoder="istft", decoder_filters=16, decoder_layers=2)


def test_istft_decoder_lengths_and_context():
    """The inverse-STFT decoder gives hop samples per frame, and frame t's samples depend on no
    latent frame beyond `context_frames` either side (while frames just inside it do count)."""
    torch.manual_seed(2)
    model = NativeCodecModel(CodecConfig(**{**TINY, **ISTFT})).eval()
    hop, frames = model.config.hop_length, model.decoder.context_frames()
    assert frames == 3 * (1 + 2) + 2
    for n in (1, 2, 7):
        assert model.decode_latents(torch.randn(2, 16, n)).shape == (2, 1, n * hop)
    z, t = torch.randn(1, 16, 60), 30
    w = z.clone()
    w[..., : t - frames] = 0
    w[..., t + 1 + frames:] = 0
    with torch.no_grad():
        a, b = model.decoder(z), model.decoder(w)
        inside = z.clone()
        inside[..., t - frames] = 0
        c = model.decoder(inside)
    block = slice(t * hop, (t + 1) * hop)
    assert torch.allclose(a[..., block], b[..., block], atol=1e-6)
    assert not torch.allclose(a[..., block], c[..., block], atol=1e-6)


def test_istft_windowed_decode_matches_whole_decode():
    x = tone(2.0, seed=5)
    codes = tiny_codec(chunk_seconds=600, **ISTFT).encode(x)
    whole = tiny_codec(chunk_seconds=600, **ISTFT).decode(codes)
    windowed = tiny_codec(chunk_seconds=0.1, **ISTFT).decode(codes)
    assert whole.shape == (1, len(x)) and np.abs(whole).max() > 0
    np.testing.assert_allclose(windowed, whole, atol=1e-5)


def test_istft_decoder_runs_under_bf16_autocast():
    """The GPU recipe trains under bf16 autocast: the head's bfloat16 output must reach the inverse
    FFT as float32 (there is no bfloat16 complex type), and the audio must match float32's closely."""
    torch.manual_seed(4)
    model = NativeCodecModel(CodecConfig(**{**TINY, **ISTFT})).eval()
    z = torch.randn(1, 16, 12)
    with torch.no_grad():
        exact = model.decoder(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.decoder(z)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert (mixed - exact).abs().max() <= 0.1 * exact.abs().max()


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="unknown decoder 'wavenet'"):
        NativeCodecModel(CodecConfig(**TINY, decoder="wavenet"))
