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
