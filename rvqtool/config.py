"""The codec's hyper-parameters, saved as JSON beside the weights so a checkpoint is self-describing."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field


def bits_per_code(codebook_size: int) -> int:
    """Bits one code takes (what bitrates count and packed code files store): at least one."""
    return max(1, math.ceil(math.log2(codebook_size)))


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to rebuild the network; the weights file holds the rest."""

    sample_rate: int = 24000
    channels: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder order, as in EnCodec; the encoder runs them reversed
    encoder_filters: int = 16
    decoder: str = "seanet"        # seanet (transposed convs) or istft (ConvNeXt + inverse STFT, istft_decoder.py)
    decoder_filters: int = 32      # seanet: base filters; istft: the blocks' width
    decoder_layers: int = 8        # istft: ConvNeXt blocks (seanet's depth follows `ratios`)
    dimension: int = 128
    n_residual_layers: int = 1
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    lstm_layers: int = 0
    causal: bool = False
    n_quantizers: int = 8
    codebook_size: int = 1024
    # training-only knobs that shape the quantizer's behaviour; kept so --resume continues identically
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.1  # fraction of a uniform share of each batch
    quantizer_dropout: float = 0.5
    extra: dict = field(default_factory=dict)

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bits_per_code(self) -> int:
        return bits_per_code(self.codebook_size)

    def bandwidth_kbps(self, n_q: int) -> float:
        """Bitrate of n_q levels, in kbps (frames/s x levels x bits)."""
        return self.frame_rate * n_q * self.bits_per_code / 1000.0

    def n_q_for_bandwidth(self, kbps: float) -> int:
        """Largest number of levels whose bitrate does not exceed `kbps` (at least 1)."""
        per_level = self.bandwidth_kbps(1)
        return max(1, min(self.n_quantizers, int(math.floor(kbps / per_level + 1e-9))))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "CodecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "ratios" in data:
            data["ratios"] = tuple(int(r) for r in data["ratios"])
        return cls(**data)
