"""Reference EnCodec models with random weights, for equivalence tests against rvqtool.

No checkpoint can be downloaded here, so the reference model is built with random weights,
seeded. Two things make that a real test rather than a trivial one:

* weights are redrawn so that the latent is well spread (every weight-normed conv gets gain 1,
  biases small): PyTorch's default init gives latents dominated by one constant direction,
  where every code is a near-tie;
* the codebooks (which the reference starts at zero, so every code would be 0) are filled from
  real latents, as k-means init would: per level, k-means on the residuals of the example clips'
  latents (at three gains and two sub-frame offsets), so codes take hundreds of values.

`encodec` imports torchaudio at import time (for file I/O we do not use); no torchaudio wheel
fits the CPU torch here, so an empty stand-in module is registered first. The encode/decode
paths never touch it.
"""
from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rvqtool import kernels
from rvqtool.io.audio import read_audio
from tests.audio import CLIPS


def import_encodec():
    """The reference package, or a clean skip when it is not installed."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.nn.utils.weight_norm")
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # stand-in, see above
    return pytest.importorskip("encodec")


def clips(sample_rate: int) -> list[np.ndarray]:
    return [read_audio(path, sample_rate)[0] for path in CLIPS.values()]


def redraw_weights(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.fill_(1.0)
            elif name.endswith(".bias") and "lstm" not in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)


@torch.no_grad()
def fill_codebooks(codebooks: list[torch.Tensor], latents: torch.Tensor, iterations: int = 2, seed: int = 0) -> None:
    """Per level: k-means (random init, a few Lloyd steps) on what earlier levels left over."""
    generator = torch.Generator().manual_seed(seed)
    residual = latents.clone()
    for codebook in codebooks:
        centroids = residual[torch.randperm(len(residual), generator=generator)[: codebook.shape[0]]].clone()
        for _ in range(iterations):
            index = kernels.nearest(residual, centroids)
            counts = torch.bincount(index, minlength=len(centroids)).float()
            sums = torch.zeros_like(centroids).index_add_(0, index, residual)
            used = counts > 0
            centroids[used] = sums[used] / counts[used, None]
        codebook.copy_(centroids)
        residual -= centroids[kernels.nearest(residual, centroids)]


@torch.no_grad()
def encodec_24khz(directory: Path, seed: int = 0):
    """(reference model, path of its saved state dict) with random weights and filled codebooks."""
    encodec = import_encodec()
    torch.manual_seed(seed)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    redraw_weights(model, seed)
    audio = torch.from_numpy(np.concatenate(clips(24000)))
    latents = torch.cat([model.encoder((audio[offset:] * gain)[None, None])[0].T
                         for offset in (0, 160) for gain in (0.5, 1.0, 2.0)])
    fill_codebooks([layer._codebook.embed for layer in model.quantizer.vq.layers], latents.contiguous())
    for layer in model.quantizer.vq.layers:
        layer._codebook.inited.fill_(1.0)
    path = directory / "encodec_24khz-test.th"
    torch.save(model.state_dict(), path)
    return model, path


def import_dac():
    """The `dac` package (descript-audio-codec), or a clean skip.

    DAC imports descript-audiotools, whose import pulls in torchaudio and a dozen training-time
    packages. The model code uses only two names from it, a base class (`ml.BaseModel`, for
    saving/loading with metadata) and `AudioSignal` (for `compress`, which we do not call); the
    stand-ins below give plain `nn.Module` and placeholders, `argbind` (a CLI helper) a no-op
    decorator, and `tqdm` (progress bars of `compress`) a pass-through if it is not installed. Encode/decode run DAC's real code."""
    if "audiotools" not in sys.modules:
        audiotools = types.ModuleType("audiotools")
        ml = types.ModuleType("audiotools.ml")
        ml.BaseModel = type("BaseModel", (torch.nn.Module,), {"INTERN": [], "EXTERN": []})
        ml.Accelerator = object
        audiotools.ml, audiotools.AudioSignal, audiotools.STFTParams = ml, object, object
        sys.modules.update({"audiotools": audiotools, "audiotools.ml": ml})
        argbind = types.ModuleType("argbind")
        argbind.bind = lambda *a, **k: (lambda f: f)
        sys.modules.setdefault("argbind", argbind)
        if "tqdm" not in sys.modules:  # progress bars of `compress`; not on the encode/decode path
            tqdm = types.ModuleType("tqdm")
            tqdm.tqdm = lambda iterable=None, *a, **k: iterable
            sys.modules["tqdm"] = tqdm
    return pytest.importorskip("dac")


@torch.no_grad()
def dac_model(directory: Path, sample_rate: int = 44100, seconds: float = 1.2, seed: int = 0, **kwargs):
    """(reference DAC, path of a checkpoint in DAC's own file layout, the audio, its reference
    latent) with random weights and codebooks filled from the projected latents of that audio
    (the first `seconds` of each example clip): per level, codes drawn from the l2-normalised
    projections, as a k-means init would start, jittered copies where frames are fewer than codes."""
    dac = import_dac()
    torch.manual_seed(seed)
    model = dac.DAC(sample_rate=sample_rate, **kwargs).eval()
    audio = np.concatenate([c[: int(seconds * sample_rate)] for c in clips(sample_rate)])
    wav = torch.from_numpy(audio)[None, None]
    latent = model.encoder(model.preprocess(wav, sample_rate))
    residual = latent
    generator = torch.Generator().manual_seed(seed)
    for level in model.quantizer.quantizers:
        projected = torch.nn.functional.normalize(level.in_proj(residual)[0].T.contiguous())
        size = level.codebook.weight.shape[0]
        picks = torch.randperm(len(projected), generator=generator)[:size]
        if len(picks) < size:  # fewer frames than codes: the rest are jittered copies
            picks = torch.cat([picks, torch.randint(len(projected), (size - len(picks),), generator=generator)])
        jitter = torch.randn(size, projected.shape[1], generator=generator) * 0.05
        jitter[: len(projected)] = 0
        level.codebook.weight.copy_(projected[picks] + jitter)
        z_q, *_ = level(residual)
        residual = residual - z_q
    path = directory / f"dac_{sample_rate // 1000}khz-test.pth"
    kwargs = {"sample_rate": sample_rate, **kwargs}
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": kwargs}}, path)
    return model, path, audio, latent


@torch.no_grad()
def encodec_48khz(directory: Path, seed: int = 0):
    """(reference 48 kHz stereo model, path of its saved state dict, stereo test audio [2, n]).

    The model normalises each 1 s segment, so gains add nothing: its codebooks are filled from
    the latents of the example clips' normalised segments at three sub-frame offsets."""
    encodec = import_encodec()
    torch.manual_seed(seed)
    model = encodec.EncodecModel.encodec_model_48khz(pretrained=False).eval()
    redraw_weights(model, seed)
    speech, music, env = clips(48000)
    stereo = torch.from_numpy(np.stack([np.concatenate([speech[:240000], env]), np.concatenate([music, speech[:240000]])]))
    latents = []
    for offset in (0, 160, 320):
        wav = stereo[None, :, offset:]
        for start in range(0, wav.shape[-1], model.segment_stride):
            segment = wav[..., start:start + model.segment_length]
            scale = 1e-8 + segment.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()
            latents.append(model.encoder(segment / scale)[0].T)
    fill_codebooks([layer._codebook.embed for layer in model.quantizer.vq.layers], torch.cat(latents).contiguous())
    for layer in model.quantizer.vq.layers:
        layer._codebook.inited.fill_(1.0)
    path = directory / "encodec_48khz-test.th"
    torch.save(model.state_dict(), path)
    return model, path, stereo[:, : int(2.6 * 48000) + 77].numpy()
