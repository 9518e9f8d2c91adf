"""DAC checkpoints on rvqtool's modules give the reference package's codes and audio.

Against `descript-audio-codec` (PyPI; see tests/pretrained_reference.py for the stand-ins its
training-time imports need) with random, seeded weights and codebooks filled from the
projected latents of real audio: the latent, the codes for every n_quantizers, decoded audio,
`rvq convert`, and refusals. DAC runs at ~1x real time on one core, so the audio is short."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rvqtool import UserError, load_codec
from tests.pretrained_reference import dac_model, import_dac

import_dac()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    model, path, audio, latent = dac_model(tmp_path_factory.mktemp("dac"))
    return model, path, audio[:-77], latent   # not a whole number of frames


def test_codes_equal_the_reference_for_every_n_quantizers(reference):
    model, path, audio, _ = reference
    codec = load_codec(f"dac_44khz:{path}")
    wav = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        latent = model.encoder(model.preprocess(wav, 44100))
        ours_latent = codec.model.encoder(torch.nn.functional.pad(wav, (0, -wav.shape[-1] % 512)))
        # time-major convs sum in another order than the reference: equal up to float rounding
        error = float((latent - ours_latent).norm() / latent.norm())
        print(f"latent relative error {error:.2e}")
        assert error < 1e-5
        codes = codec.encode(audio).codes[0]      # the whole path, all 9 levels
        for n in range(1, model.n_codebooks + 1):
            expected = model.quantizer(latent, n)[1][0].numpy()
            ours = codes[:n] if n == model.n_codebooks else codec.model.quantizer.encode(ours_latent, n)[0].numpy()
            rate = float((ours == expected).mean())
            print(f"n_quantizers={n}: {rate:.5%} of {expected.size} codes equal")
            assert ours.shape == expected.shape and rate >= 0.999
    distinct = [len(np.unique(level)) for level in expected]
    print("distinct codes per level:", distinct)
    # 310 frames; the codebooks were drawn from this audio's projections, so nearly every frame
    # has its own code at every level
    assert min(distinct) >= 150


def test_decoded_audio_matches_the_reference(reference):
    model, path, audio, _ = reference
    codec = load_codec(f"dac_44khz:{path}")
    audio = audio[: 22050 + 33]   # half a second: DAC's decoder is slow
    codes = codec.encode(audio, n_q=4)
    with torch.no_grad():
        z, _, _ = model.quantizer.from_codes(torch.from_numpy(codes.codes))
        expected = model.decode(z)[0, 0, : len(audio)].numpy()
    decoded = codec.decode(codes)[0]
    error = np.linalg.norm(decoded - expected) / np.linalg.norm(expected)
    print(f"decode relative error {error:.2e}")
    assert decoded.shape == expected.shape and error < 1e-4


def test_convert_keeps_the_model(reference, tmp_path):
    from rvqtool.pretrained.convert import convert

    _, path, _, _ = reference
    out = convert(f"dac_44khz:{path}", tmp_path / "dac44")
    direct, converted = load_codec(f"dac_44khz:{path}"), load_codec(out)
    assert converted.config == direct.config
    for (name, a), (_, b) in zip(direct.model.state_dict().items(), converted.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("kind, mutate, fragment", [
    ("dac_24khz", None, "a 44100 Hz DAC model, not dac_24khz"),
    ("encodec_24khz", None, "looks like a DAC checkpoint"),
    ("dac_44khz", "plain", "no 'state_dict'"),
    ("dac_44khz", "shape", "has shape"),
])
def test_mismatched_files_are_refused(reference, tmp_path, kind, mutate, fragment):
    _, path, _, _ = reference
    checkpoint = torch.load(path, weights_only=True)
    if mutate == "plain":
        checkpoint = checkpoint["state_dict"]
    elif mutate == "shape":
        checkpoint["state_dict"]["quantizer.quantizers.0.codebook.weight"] = torch.zeros(1024, 4)
    torch.save(checkpoint, tmp_path / "bad.pth")
    with pytest.raises(UserError, match=fragment):
        load_codec(f"{kind}:{tmp_path / 'bad.pth'}")


@pytest.mark.parametrize("kind, rate, levels", [("dac_24khz", 24000, 32), ("dac_16khz", 16000, 12)])
def test_other_rates_give_the_reference_codes_and_audio(tmp_path, kind, rate, levels):
    """DAC's 24 and 16 kHz layouts (strides 2-4-5-8, odd stride 5 in the transposed convs)."""
    model, path, audio, latent = dac_model(tmp_path, rate, seconds=0.6, encoder_rates=[2, 4, 5, 8],
                                           decoder_rates=[8, 5, 4, 2], n_codebooks=levels)
    codec = load_codec(f"{kind}:{path}")
    assert codec.config.n_quantizers == levels and codec.hop_length == 320
    audio = audio[:-51]
    codes = codec.encode(audio)
    with torch.no_grad():
        expected = model.quantizer(model.encoder(model.preprocess(torch.from_numpy(audio)[None, None], rate)))[1]
        reference_audio = model.decode(model.quantizer.from_codes(expected)[0])[0, 0, : len(audio)].numpy()
    rate_equal = float((codes.codes == expected.numpy()).mean())
    print(f"{kind}: {rate_equal:.5%} of {expected.numel()} codes equal")
    assert rate_equal >= 0.999
    decoded = codec.decode(codes)[0]
    assert np.linalg.norm(decoded - reference_audio) / np.linalg.norm(reference_audio) < 1e-4
