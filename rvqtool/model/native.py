"""rvqtool's own architecture (the shipped models, what `rvq train` writes): SEANet encoder ->
residual VQ with EMA codebooks -> SEANet decoder (or, with config `decoder="istft"`, the
inverse-STFT decoder of istft_decoder.py), as one torch module implementing
rvqtool/model/interface.py. Conv-only by default, so Codec streams it in windows exactly.

With grad off (inference, as Codec runs it), encoder and decoder run through the time-major
path of seanet_inference.py, the same layers with fewer passes over memory; training and any
pass with grad on run the modules themselves."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from rvqtool.config import CodecConfig
from rvqtool.model.interface import EncoderQuantizerDecoder
from rvqtool.model import seanet_inference
from rvqtool.model.quantizer import QuantizerOutput, ResidualVQ
from rvqtool.model.istft_decoder import ISTFTDecoder
from rvqtool.model.seanet import Decoder, Encoder

DECODERS = {"seanet": Decoder, "istft": ISTFTDecoder}
DEFAULT_DECODER_FILTERS = {"seanet": CodecConfig.decoder_filters, "istft": 384}   # a width of 32 starves istft


class NativeCodecModel(EncoderQuantizerDecoder):
    whole_input = False
    time_major = True  # False: inference through the channels-first modules too (for comparisons)

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(config.n_quantizers, config.codebook_size, config.dimension,
                                    config.ema_decay, config.dead_code_threshold)
        if config.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {config.decoder!r}: choose from {', '.join(DECODERS)}")
        self.decoder = DECODERS[config.decoder](config)

    def forward(self, wav: torch.Tensor, n_q: int) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training pass: wav [B, C, n·hop] -> reconstruction of the same shape and quantiser stats."""
        q = self.quantizer(self.encoder(wav), n_q)
        return self.decoder(q.quantized), q

    # ---- rvqtool.model.interface.CodecModel (quantize, dequantize, decode_latents: the parts') ----
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, C, S] -> [B, D, ceil(S / hop)], the last frame padded with zeros."""
        pad = -wav.shape[-1] % self.config.hop_length
        wav = F.pad(wav, (0, pad)) if pad else wav
        if self._fast_path():
            return seanet_inference.run(self.encoder.model, wav)
        return self.encoder(wav)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, D, T] -> wav [B, C, T x hop]."""
        if self._fast_path() and isinstance(self.decoder, Decoder):
            return seanet_inference.run(self.decoder.model, latents)
        return self.decoder(latents)

    def _fast_path(self) -> bool:
        return self.time_major and not torch.is_grad_enabled()

    def encoder_context(self) -> tuple[int, int] | None:
        samples = self.encoder.context_samples()
        return None if samples is None else (samples, samples)

    def decoder_context(self) -> tuple[int, int] | None:
        frames = self.decoder.context_frames()
        return None if frames is None else (frames, frames)
