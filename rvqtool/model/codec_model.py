"""Encoder -> residual VQ -> decoder, as one torch module."""
from __future__ import annotations

import torch
from torch import nn

from rvqtool.config import CodecConfig
from rvqtool.model.quantizer import QuantizerOutput, ResidualVQ
from rvqtool.model.seanet import Decoder, Encoder


class CodecModel(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(config.n_quantizers, config.codebook_size, config.dimension,
                                    config.ema_decay, config.dead_code_threshold)
        self.decoder = Decoder(config)

    def forward(self, wav: torch.Tensor, n_q: int) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training pass: wav [B, C, n·hop] -> reconstruction of the same shape and quantiser stats."""
        q = self.quantizer(self.encoder(wav), n_q)
        return self.decoder(q.quantized), q
