"""Adversarial losses: hinge losses for both players and relative feature matching (EnCodec's forms).

Each loss is averaged over the discriminator's scales so that its size does not grow with their number.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rvqtool.train.discriminator import DiscriminatorOutput


def discriminator_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """Hinge: push real logits above +1 and fake ones below -1; zero once every logit is past its margin."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_loss(fake: DiscriminatorOutput) -> torch.Tensor:
    """Hinge for the codec: reward fakes the discriminator scores as real, up to the +1 margin."""
    return sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)


def feature_matching_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput, eps: float = 1e-8) -> torch.Tensor:
    """L1 between real and fake feature maps, each layer divided by the real map's mean magnitude so
    that no layer dominates; the real side is a target (detached)."""
    total, count = 0.0, 0
    for (_, real_maps), (_, fake_maps) in zip(real, fake):
        for r, f in zip(real_maps, fake_maps):
            r = r.detach()
            total = total + (f - r).abs().mean() / (r.abs().mean() + eps)
            count += 1
    return total / count
