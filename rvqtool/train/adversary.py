"""The discriminator's side of adversarial training: its network, optimiser, update step and saved state.

The trainer owns the codec; this object owns everything the codec's training would not need without
adversarial losses, so that a run without them is exactly what it was before they existed.
"""
from __future__ import annotations

import torch

from rvqtool.train.adversarial_losses import discriminator_loss, feature_matching_loss, generator_loss
from rvqtool.train.discriminator import DiscriminatorConfig, Discriminator
from rvqtool.train.state_tensors import restore, to_tensors

PREFIXES = ("disc.", "disc_optim.")  # its weights, its optimiser's moments


class Adversary:
    def __init__(self, config: DiscriminatorConfig, learning_rate: float, seed: int, device: str):
        # its own seed, and the global RNG left untouched: adding a discriminator to a run (or
        # resuming one with it) must not change what the codec's random draws would have been
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.discriminator = Discriminator(config).to(device)
        self.config = config
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=learning_rate, betas=(0.5, 0.9))

    def train_step(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One discriminator update on a batch of real audio and (detached) reconstructions; its loss."""
        loss = discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def codec_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adversarial and feature-matching losses for the codec; gradients reach `fake` only."""
        self.discriminator.requires_grad_(False)
        try:
            with torch.no_grad():
                judged_real = self.discriminator(real)
            judged_fake = self.discriminator(fake)
        finally:
            self.discriminator.requires_grad_(True)
        return {"adversarial": generator_loss(judged_fake), "feature": feature_matching_loss(judged_real, judged_fake)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return to_tensors(self.discriminator, self.optimizer, *PREFIXES)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Restore from a training state; False (and a fresh discriminator) when it holds none."""
        return restore(tensors, self.discriminator, self.optimizer, *PREFIXES)
