"""Loss balancer (EnCodec's idea, our code): weights as shares of the gradient, not of the loss.

Losses on the decoder output differ in scale by orders of magnitude (a hinge loss near 1, an L1 on
samples near 0.01), and their scales drift as training goes, so fixed loss weights mean different
things at different times. The balancer takes each loss's gradient with respect to the decoder
output, divides it by a running average of its norm, and rescales it so that loss i contributes
`share_i / sum(shares)` of a fixed total norm. The codec then backpropagates the sum once.
"""
from __future__ import annotations

import torch


class LossBalancer:
    def __init__(self, shares: dict[str, float], decay: float = 0.999, total_norm: float = 1.0, eps: float = 1e-12):
        if sum(shares.values()) <= 0 or any(s < 0 for s in shares.values()):
            raise ValueError("balancer shares must be non-negative and not all zero")
        self.shares = {name: s for name, s in shares.items() if s > 0}
        self.decay, self.total_norm, self.eps = decay, total_norm, eps
        # running averages with bias correction: average = sum / weight, both decayed each step
        self.averages = {name: [0.0, 0.0] for name in self.shares}

    def gradient(self, losses: dict[str, torch.Tensor], output: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The gradient to send back through `output`, and each loss's raw gradient norm (for the log).

        Shares are renormalised over the losses given (adversarial ones are absent while the
        discriminator warms up); the graph to `output` is kept for the caller.
        """
        active = {name: share for name, share in self.shares.items() if name in losses}
        if not active:
            raise ValueError(f"none of the balanced losses {sorted(self.shares)} was given")
        scale = self.total_norm / sum(active.values())
        grads, norms = {}, {}
        for name in active:
            (grad,) = torch.autograd.grad(losses[name], output, retain_graph=True, allow_unused=True)
            grads[name] = torch.zeros_like(output) if grad is None else grad
            # norm per batch item, then averaged: one loud example does not set the scale for all
            norms[name] = float(grads[name].flatten(1).norm(dim=1).mean())
        combined = torch.zeros_like(output)
        for name, share in active.items():
            running = self.averages[name]
            running[0] = self.decay * running[0] + norms[name]
            running[1] = self.decay * running[1] + 1.0
            combined += grads[name] * (share * scale / (running[0] / running[1] + self.eps))
        return combined, norms

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"balancer.{name}": torch.tensor(v, dtype=torch.float64) for name, v in self.averages.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the running averages; a loss the saved run did not balance starts afresh."""
        for name in self.averages:
            if f"balancer.{name}" in tensors:
                self.averages[name] = [float(v) for v in tensors[f"balancer.{name}"]]
