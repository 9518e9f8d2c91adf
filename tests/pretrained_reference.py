"""Reference EnCodec models with random weights, for equivalence tests against rvqtool.

No checkpoint can be downloaded here, so the reference model is built with random weights,
seeded. Two things make that a real test rather than a trivial one:

* weights are redrawn so that the latent is well spread (every weight-normed conv gets gain 1,
  biases small): PyTorch's default init gives latents dominated by one constant direction,
  where every code is a near-tie;
* the codebooks (which the reference starts at zero, so every code would be 0) are filled from
  real latents, as k-means init would: per level, k-means on the residuals of the example clips'
  latents (at three gains and two sub-frame offsets), so codes take hundreds of values. The
  offsets are never 0: the test audio (which starts at 0) is held out of the fit, as real audio
  is held out of a trained codebook; fitted on its own latents, the deep levels' residuals
  shrank to the size of float rounding, so any 1e-6 change in the latent flipped codes.

`encodec` imports torchaudio at import time (for file I/O we do not use). Where torchaudio does
not import (no wheel fits the CPU torch; the Makefile installs it as pure Python), an empty
stand-in module is registered first; the encode/decode paths never touch it. A torchaudio that
imports is left in place: a stand-in would hide it from the tests that use it (XCodec2's features).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
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


def stand_in(name: str) -> types.ModuleType:
    """An empty module for `name`, with a spec, so that importlib (e.g. torch._dynamo's
    find_spec sweep of known packages) treats it like any imported module."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return module


def missing(name: str) -> bool:
    return name not in sys.modules and importlib.util.find_spec(name) is None


def import_encodec():
    """The reference package, or a clean skip when it is not installed."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.nn.utils.weight_norm")
    try:
        import torchaudio  # noqa: F401
    except Exception:  # noqa: BLE001 -- one built for another torch raises OSError
        sys.modules["torchaudio"] = stand_in("torchaudio")  # stand-in, see above
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


def spread_seeds(points: torch.Tensor, size: int, generator: torch.Generator, spacing: float = 0.05) -> torch.Tensor:
    """`size` of `points` [N, D] in random order, each further than `spacing` x their median norm
    from the ones before (as k-means++ keeps its seeds apart); random picks fill any shortfall.

    Plain random seeds took dozens of near-copies of the latent of digital silence (the example
    clips hold some), centroids within 1e-4 of each other: near-ties that no trained codebook
    has, which a float rounding difference of 1e-6 in the latent flips."""
    order = torch.randperm(len(points), generator=generator)
    min_distance = spacing * float(points.norm(dim=1).median())
    chosen = torch.empty(0, points.shape[1], dtype=points.dtype)
    for start in range(0, len(order), 256):
        for candidate in points[order[start:start + 256]]:
            if len(chosen) == 0 or float(torch.cdist(candidate[None], chosen).min()) > min_distance:
                chosen = torch.cat([chosen, candidate[None]])
                if len(chosen) == size:
                    return chosen
    rest = torch.randint(len(points), (size - len(chosen),), generator=generator)
    return torch.cat([chosen, points[rest]])


@torch.no_grad()
def fill_codebooks(codebooks: list[torch.Tensor], latents: torch.Tensor, iterations: int = 2, seed: int = 0) -> None:
    """Per level: k-means (spread seeds, a few Lloyd steps) on what earlier levels left over,
    each centroid then moved by a little noise (a tenth of the residuals' median norm).

    Without the noise a point alone in its cluster leaves a residual of exactly 0: the example
    clips give ~7000 latents, so by level 12 of 32 every residual was 0 and the deep codebooks
    collapsed to (near-)zero vectors, where every code is a tie that float rounding decides."""
    generator = torch.Generator().manual_seed(seed)
    residual = latents.clone()
    for codebook in codebooks:
        centroids = spread_seeds(residual, codebook.shape[0], generator)
        for _ in range(iterations):
            index = kernels.nearest(residual, centroids)
            counts = torch.bincount(index, minlength=len(centroids)).float()
            sums = torch.zeros_like(centroids).index_add_(0, index, residual)
            used = counts > 0
            centroids[used] = sums[used] / counts[used, None]
        scale = 0.1 * float(residual.norm(dim=1).median()) / residual.shape[1] ** 0.5
        centroids += torch.randn(centroids.shape, generator=generator) * scale
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
                         for offset in (80, 160) for gain in (0.5, 1.0, 2.0)])
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
        audiotools = stand_in("audiotools")
        ml = stand_in("audiotools.ml")
        ml.BaseModel = type("BaseModel", (torch.nn.Module,), {"INTERN": [], "EXTERN": []})
        ml.Accelerator = object
        audiotools.ml, audiotools.AudioSignal, audiotools.STFTParams = ml, object, object
        sys.modules.update({"audiotools": audiotools, "audiotools.ml": ml})
        argbind = stand_in("argbind")
        argbind.bind = lambda *a, **k: (lambda f: f)
        sys.modules.setdefault("argbind", argbind)
        if missing("tqdm"):  # progress bars of `compress`; not on the encode/decode path
            tqdm = stand_in("tqdm")
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
    the latents of the example clips' normalised segments at three sub-frame offsets (none 0)."""
    encodec = import_encodec()
    torch.manual_seed(seed)
    model = encodec.EncodecModel.encodec_model_48khz(pretrained=False).eval()
    redraw_weights(model, seed)
    speech, music, env = clips(48000)
    stereo = torch.from_numpy(np.stack([np.concatenate([speech[:240000], env]), np.concatenate([music, speech[:240000]])]))
    latents = []
    for offset in (80, 160, 240):
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
