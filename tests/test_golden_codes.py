"""Golden codes of the shipped default model: the codes `load_codec("default")` gives the three
shipped example clips, and the audio it decodes from the speech clip's first second of codes, as
stored in tests/data/ when this test was written (default-v2, before the inference fast path).
A change to the model's arithmetic that flips a code, or moves the decoded audio beyond float
rounding, fails here.

Margins, measured when stored (float64 distances of the stored latents): the chosen code beats
the runner-up by >= 1e-5 of the residual's squared norm at every level but one frame of music's
level 8 (2.2e-6), so a change that only reorders float32 sums is unlikely to flip a code here,
and one that changes the arithmetic more than that does.

Regenerate (only on purpose, when the shipped model changes):
    PYTHONPATH=. python tests/test_golden_codes.py --write
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rvqtool import load_codec
from rvqtool.io.audio import read_audio
from tests.audio import CLIPS

DATA = Path(__file__).resolve().parent / "data"
CODES = DATA / "golden_default_codes.npz"        # one uint16 [8, frames] array per clip
AUDIO = DATA / "golden_default_speech_1s.npy"    # float32, decode of the speech clip's first 75 frames
DECODE_FRAMES = 75
AUDIO_TOLERANCE = 1e-5  # max abs difference: float rounding of a reordered sum, not a changed model


def encode_clips(codec) -> dict[str, np.ndarray]:
    return {name: codec.encode(read_audio(path, codec.sample_rate)).codes[0].astype(np.uint16)
            for name, path in sorted(CLIPS.items())}


def decode_speech(codec, codes: np.ndarray) -> np.ndarray:
    """The model's decode (dequantize + decoder, one pass) of the first DECODE_FRAMES frames."""
    head = torch.from_numpy(codes[None, :, :DECODE_FRAMES].astype(np.int64))
    with torch.inference_mode():
        return codec.model.decode_latents(codec.model.dequantize(head))[0, 0].numpy()


@pytest.fixture(scope="module")
def codec():
    return load_codec("default")


def test_default_model_codes_equal_the_golden_codes(codec):
    assert codec.sha256 == "c680f3cddf43e4d0d50a9b3961ab17fa034b2d8a7b20b9a3b1f8111efb8ad4a4", \
        "the default model changed: regenerate the golden codes on purpose"
    golden = np.load(CODES)
    ours = encode_clips(codec)
    assert sorted(golden.files) == sorted(ours)
    for name, codes in ours.items():
        differ = int((codes != golden[name]).sum())
        assert differ == 0, f"{name}: {differ} of {codes.size} codes differ from the golden codes"


@pytest.mark.parametrize("threads", [1, 2])
def test_default_model_decode_equals_the_golden_audio_within_rounding(codec, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        audio = decode_speech(codec, np.load(CODES)["speech"])
    finally:
        torch.set_num_threads(before)
    golden = np.load(AUDIO)
    assert audio.shape == golden.shape
    assert float(np.abs(audio - golden).max()) <= AUDIO_TOLERANCE


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    model = load_codec("default")
    codes = encode_clips(model)
    np.savez_compressed(CODES, **codes)
    np.save(AUDIO, decode_speech(model, codes["speech"]).astype(np.float32))
    print({name: c.shape for name, c in codes.items()})
