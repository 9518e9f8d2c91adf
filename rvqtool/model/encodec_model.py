"""EnCodec-layout codec (encoder -> our ResidualVQ -> decoder) run the way the reference runs it.

The LSTM makes every frame depend on the whole input, so `encode_segments` takes the whole signal
in one pass (24 kHz), or, where the config names a segment (48 kHz), cuts it into segments of
`segment_seconds` overlapping by `overlap`, each normalised by its RMS `scale` and encoded on its
own; decoding scales each segment back and joins them by linear cross-fades. Segment positions
depend only on the length, so codes [B, n_q, sum of segment frames] and the scales suffice.
"""
from __future__ import annotations

import math

import torch

from rvqtool.config import CodecConfig
from rvqtool.model.encodec_seanet import EncodecDecoder, EncodecEncoder
from rvqtool.model.interface import EncoderQuantizerDecoder
from rvqtool.model.quantizer import ResidualVQ
from rvqtool.windowing import segments


class EncodecCodecModel(EncoderQuantizerDecoder):
    whole_input = True  # Codec: encode/decode in one pass, never in windows (the LSTM sees it all)

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = EncodecEncoder(config)
        self.quantizer = ResidualVQ(config.n_quantizers, config.codebook_size, config.dimension)
        self.quantizer.initialized.fill_(True)  # its codebooks come from a checkpoint, never from k-means
        self.decoder = EncodecDecoder(config)
        seconds = config.extra.get("segment_seconds")
        self.segment_length = int(seconds * config.sample_rate) if seconds else None
        overlap = float(config.extra.get("overlap", 0.01))
        self.segment_stride = max(1, int((1 - overlap) * self.segment_length)) if seconds else None
        self.normalize = bool(config.extra.get("normalize", False))

    # ---- rvqtool.model.interface.CodecModel: the coding methods are the parts' (the encoder
    # pads any length as EnCodec does) ------------------------------------------------------------
    def encoder_context(self) -> None:
        return None   # the LSTM sees the whole input

    def decoder_context(self) -> None:
        return None

    # ---- rvqtool.model.interface.SegmentedCodecModel ------------------------------------------
    def encode_segments(self, wav: torch.Tensor, n_q: int) -> tuple[torch.Tensor, list[float] | None]:
        """wav [B, C, n] -> codes [B, n_q, frames(n)] and per-segment scales (B = 1) or None."""
        codes, scales = [], []
        for start, stop in segments(wav.shape[-1], self.segment_length, self.segment_stride):
            x = wav[..., start:stop]
            if self.normalize:
                scale = 1e-8 + x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()
                x = x / scale
                scales.append(float(scale.view(-1)[0]))
            codes.append(self.quantize(self.encode_latents(x), n_q))
        return torch.cat(codes, dim=-1), (scales if self.normalize else None)

    def decode_segments(self, codes: torch.Tensor, length: int, scales: list[float] | None) -> torch.Tensor:
        """codes [B, n_q, frames(length)] -> wav [B, C, length]."""
        hop, pieces, first = self.config.hop_length, [], 0
        for i, (start, stop) in enumerate(segments(length, self.segment_length, self.segment_stride)):
            n = math.ceil((stop - start) / hop)
            wav = self.decode_latents(self.dequantize(codes[..., first:first + n]))
            pieces.append(wav * scales[i] if scales is not None else wav)
            first += n
        if len(pieces) == 1:
            return pieces[0][..., :length]
        return cross_fade(pieces, self.segment_stride)[..., :length]


def cross_fade(pieces: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Overlap-add pieces placed every `stride` samples, each weighted by a triangle over the first
    piece's length and the sum normalised by the weights (EnCodec's segment join)."""
    size = pieces[0].shape[-1]
    t = torch.linspace(0, 1, size + 2, dtype=pieces[0].dtype, device=pieces[0].device)[1:-1]
    ramp = 0.5 - (t - 0.5).abs()
    total = stride * (len(pieces) - 1) + pieces[-1].shape[-1]
    out = pieces[0].new_zeros(*pieces[0].shape[:-1], total)
    weight = pieces[0].new_zeros(total)
    for i, piece in enumerate(pieces):
        n, at = piece.shape[-1], i * stride
        out[..., at:at + n] += ramp[:n] * piece
        weight[at:at + n] += ramp[:n]
    return out / weight
