"""Every family's model keeps the contract of rvqtool/model/interface.py (what Codec relies on), and
every KIND names a registered family: the checks a new family's model passes too."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rvqtool.codec import Codec
from rvqtool.config import CodecConfig
from rvqtool.model.interface import CodecModel, SegmentedCodecModel
from rvqtool.model.native import NativeCodecModel
from rvqtool.pretrained import dac, encodec
from rvqtool.registry import FAMILIES, KINDS
from tests.audio import tone

SMALL = dict(encoder_filters=4, decoder_filters=8, dimension=16, n_quantizers=3, codebook_size=32)


def native() -> CodecModel:
    return NativeCodecModel(CodecConfig(**SMALL))


def encodec_24khz() -> CodecModel:
    return encodec.build(dataclasses.replace(encodec.CONFIGS["encodec_24khz"], **SMALL))


def dac_small() -> CodecModel:
    return dac.build(CodecConfig(sample_rate=16000, ratios=(4, 2), **SMALL,
                                 extra={"architecture": "dac", "encoder_rates": [2, 4], "codebook_dim": 4}))


MEMBERS = ("config", "whole_input", "encode_latents", "quantize", "dequantize", "decode_latents",
           "encoder_context", "decoder_context")


@pytest.mark.parametrize("make", [native, encodec_24khz, dac_small])
def test_a_family_model_keeps_the_shapes_of_the_contract(make):
    torch.manual_seed(0)
    model = make().eval()
    assert all(hasattr(model, name) for name in MEMBERS) and isinstance(model.whole_input, bool)
    config, n_q = model.config, 3      # B = 2 != n_q: a level-major [n_q, B, T] would not pass
    hop, length = config.hop_length, 5 * config.hop_length + 3      # not whole frames
    with torch.inference_mode():
        latents = model.encode_latents(torch.randn(2, config.channels, length))
        assert latents.shape == (2, config.dimension, 6)
        codes = model.quantize(latents, n_q)
        assert codes.shape == (2, n_q, 6) and codes.dtype == torch.int64
        assert int(codes.min()) >= 0 and int(codes.max()) < config.codebook_size
        assert model.dequantize(codes).shape == latents.shape
        assert model.decode_latents(model.dequantize(codes)).shape == (2, config.channels, 6 * hop)
    for context in (model.encoder_context(), model.decoder_context()):
        assert context is None or (len(context) == 2 and all(isinstance(c, int) and c >= 0 for c in context))
    assert model.whole_input or model.encoder_context() is not None


@pytest.mark.parametrize("make", [native, dac_small])
def test_codec_round_trips_any_family_through_the_interface_alone(make):
    torch.manual_seed(0)
    model = make()
    assert not isinstance(model, SegmentedCodecModel)
    codec = Codec(model, {"name": "small", "sha256": "0" * 64}, __import__("pathlib").Path("small.safetensors"),
                  torch.device("cpu"), chunk_seconds=0.05)
    audio = tone(0.3, sample_rate=model.config.sample_rate, seed=1)
    codes = codec.encode(audio)
    assert codes.codes.shape == (1, 3, -(-len(audio) // model.config.hop_length))
    assert codec.decode(codes).shape == (1, len(audio)) and np.isfinite(codec.decode(codes)).all()


def test_every_kind_names_a_registered_family():
    assert list(KINDS) == ["encodec_24khz", "encodec_48khz", "dac_44khz", "dac_24khz", "dac_16khz", "mimi",
                           "snac_24khz", "snac_32khz", "snac_44khz", "hf"]
    for kind, architecture in KINDS.items():
        assert kind in FAMILIES[architecture].kinds
