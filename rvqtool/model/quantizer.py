"""Residual vector quantiser with EMA codebooks, as in EnCodec / SoundStream.

All levels live in one [L, K, D] buffer so that inference hands them to the kernels in one call.
Training adds k-means initialisation, EMA updates, dead-code restarts and a commitment loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rvqtool import kernels
from rvqtool.model.kmeans import kmeans


# state-dict names, under a model's `quantizer`, of what only training needs (the EMA statistics):
# inference model files leave them out
TRAINING_ONLY = ("quantizer.embed_avg", "quantizer.cluster_size")


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor      # [B, D, T], straight-through
    codes: torch.Tensor          # [B, n_q, T]
    commitment_loss: torch.Tensor
    perplexity: list[float]      # per level, of this batch's code usage


class ResidualVQ(nn.Module):
    def __init__(self, n_quantizers: int, codebook_size: int, dim: int,
                 decay: float = 0.99, dead_code_threshold: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.n_quantizers, self.codebook_size, self.dim = n_quantizers, codebook_size, dim
        self.decay, self.dead_code_threshold, self.eps = decay, dead_code_threshold, eps
        self.register_buffer("embed", torch.randn(n_quantizers, codebook_size, dim) * 0.01)
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(n_quantizers, codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    # ---- inference -------------------------------------------------------------------------
    def encode(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        """Latent [B, D, T] -> codes [B, n_q, T] (a view of the kernels' level-major codes)."""
        b, d, t = latent.shape
        flat = latent.permute(0, 2, 1).reshape(-1, d)
        codes = kernels.rvq_encode(flat, self.embed[:n_q])
        return codes.view(n_q, b, t).permute(1, 0, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, n_q, T] (any prefix of the levels) -> latent [B, D, T]."""
        b, n_q, t = codes.shape
        flat = kernels.rvq_decode(codes.permute(1, 0, 2).reshape(n_q, -1), self.embed)
        return flat.view(b, t, self.dim).permute(0, 2, 1)

    # ---- training --------------------------------------------------------------------------
    @torch.no_grad()
    def init_from_latents(self, latent: torch.Tensor, batch_vectors: int | None = None, iterations: int = 15) -> None:
        """K-means on each level's residuals of `latent` [N, D], as the first codebooks.

        Cluster sizes are scaled to `batch_vectors` (the vectors one training batch holds), the
        unit the EMA counts in, so that codes k-means left unused are restarted promptly."""
        residual = latent.detach().float().clone()
        scale = (batch_vectors or len(residual)) / len(residual)
        for level in range(self.n_quantizers):
            centroids, counts = kmeans(residual, self.codebook_size, iterations, seed=level)
            self.embed[level] = centroids
            self.cluster_size[level] = counts * scale
            self.embed_avg[level] = centroids * self.cluster_size[level][:, None]
            residual -= centroids[kernels.nearest(residual, centroids)]
        self.initialized.fill_(True)

    def forward(self, latent: torch.Tensor, n_q: int) -> QuantizerOutput:
        """Quantise with the first `n_q` levels; n_q = 0 passes the latent through (warm-up).
        Always in float32, also under autocast (bf16 training): codebook search and EMA updates stay
        exact whatever precision the encoder and decoder run in."""
        with torch.autocast(latent.device.type, enabled=False):
            return self._quantize(latent.float(), n_q)

    def _quantize(self, latent: torch.Tensor, n_q: int) -> QuantizerOutput:
        b, d, t = latent.shape
        if n_q == 0:
            return QuantizerOutput(latent, latent.new_zeros((b, 0, t), dtype=torch.long), latent.new_zeros(()), [])
        flat = latent.permute(0, 2, 1).reshape(-1, d)
        if self.training and not self.initialized:
            self.init_from_latents(flat)
        residual = flat.detach().clone()
        quantized = torch.zeros_like(flat)
        codes, perplexity = [], []
        for level in range(n_q):
            index = kernels.nearest(residual, self.embed[level])
            chosen = self.embed[level][index]
            if self.training:
                self._ema_update(level, residual, index)
            quantized = quantized + chosen
            residual = residual - chosen
            codes.append(index.view(b, t))
            usage = torch.bincount(index, minlength=self.codebook_size).float() / max(len(index), 1)
            perplexity.append(float(torch.exp(-(usage * torch.log(usage + 1e-10)).sum())))
        commitment = ((flat - quantized.detach()) ** 2).mean()
        quantized = flat + (quantized - flat).detach()  # straight-through estimator
        return QuantizerOutput(quantized.view(b, t, d).permute(0, 2, 1), torch.stack(codes, dim=1), commitment,
                               perplexity)

    @torch.no_grad()
    def _ema_update(self, level: int, x: torch.Tensor, index: torch.Tensor) -> None:
        counts = torch.bincount(index, minlength=self.codebook_size).to(x.dtype)
        sums = torch.zeros(self.codebook_size, self.dim, dtype=x.dtype, device=x.device).index_add_(0, index, x)
        self.cluster_size[level].mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg[level].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        size = self.cluster_size[level]
        total = size.sum()
        smoothed = (size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embed[level] = self.embed_avg[level] / smoothed[:, None]
        # a code is dead when its average use falls below a fraction of a uniform share of the
        # batch; dead codes restart on random vectors of this batch (a threshold in absolute
        # counts would restart nearly every code when batches are small)
        threshold = self.dead_code_threshold * len(x) / self.codebook_size
        dead = size < threshold
        n_dead = int(dead.sum())
        if n_dead:
            picks = torch.randint(len(x), (n_dead,), device=x.device)
            self.embed[level][dead] = x[picks]
            self.cluster_size[level][dead] = threshold
            self.embed_avg[level][dead] = x[picks] * threshold
