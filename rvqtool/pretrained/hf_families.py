"""The audio codecs of `transformers`, each behind rvqtool's model interface.

Every call goes to the transformers model's own modules (its encoder, quantizer, decoder), so
the codes are the ones `model.encode` gives. Where transformers exposes the split (Mimi, DAC,
EnCodec) latents are the encoder's output and windows are possible; X-Codec and XCodec2 quantize
audio only through `model.encode`, so their "latents" are the audio itself and they always run
whole inputs.

Contexts are derived from the modules, not written per checkpoint: the sum of every conv's reach
(an upper bound of the receptive field), plus layers x window for sliding-window attention; an
LSTM or full attention sees the whole input (None).
"""
from __future__ import annotations

import abc
import math

import torch
from torch import nn

from rvqtool.config import CodecConfig
from rvqtool.errors import UserError


def conv_reach(module: nn.Module) -> float:
    """How far (in input samples) outputs of this conv stack can look, summed over its convs in
    definition order, which for these encoders and decoders is forward order. Strides scale what
    follows them; transposed convs (decoders) shrink it."""
    reach, scale = 0.0, 1.0
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose1d):
            scale /= layer.stride[0]
            reach += (layer.kernel_size[0] - 1) * layer.dilation[0] * scale
        elif isinstance(layer, nn.Conv1d):
            reach += (layer.kernel_size[0] - 1) * layer.dilation[0] * scale
            scale *= layer.stride[0]
    return reach


def has_recurrence(module: nn.Module) -> bool:
    return any(isinstance(layer, nn.RNNBase) for layer in module.modules())


def _frames_to_samples(reach: float, hop: int) -> int:
    """A reach in samples, rounded up to whole frames (windows start on frame boundaries)."""
    return math.ceil(reach / hop) * hop


class HFCodecModel(nn.Module, abc.ABC):
    """A transformers codec as rvqtool's model: latents [B, D, T], codes [B, n_q, T] (int64)."""

    whole_input: bool
    causal: bool = False
    feature_extractor: str | None = None   # transformers class computing the model's input features, if any

    def __init__(self, hf_model: nn.Module, config: CodecConfig, features=None):
        super().__init__()
        self.hf = hf_model.eval()
        self.config = config
        self.features = features
        self.whole_input = self.encoder_context() is None or self.decoder_context() is None

    def encoder_context(self) -> tuple[int, int] | None:
        """Samples of context a window needs on each side so that its frames equal whole-input frames."""
        reach = self._encoder_reach()
        if reach is None:
            return None
        samples = _frames_to_samples(reach, self.config.hop_length)
        return (samples, 0) if self.causal else (samples, samples)

    def decoder_context(self) -> tuple[int, int] | None:
        """Frames of context a decoding window needs on each side."""
        reach = self._decoder_reach()
        if reach is None:
            return None
        frames = math.ceil(reach) + 1
        return (frames, 0) if self.causal else (frames, frames)

    @abc.abstractmethod
    def _encoder_reach(self) -> float | None:
        """Input samples an encoder output can depend on (None: all of them)."""

    @abc.abstractmethod
    def _decoder_reach(self) -> float | None:
        """Latent frames a decoder output can depend on (None: all of them)."""


class MimiFamily(HFCodecModel):
    """transformers' MimiModel: causal SEANet + sliding-window transformer, split RVQ (1 semantic
    level + acoustic levels). Every n_q from 1 to num_quantizers is valid."""

    @property
    def causal(self) -> bool:
        return bool(self.hf.config.use_causal_conv)

    @property
    def min_chunk_frames(self) -> int:
        """Windows (exact with the stated context, which is 80 s on the left for the published
        model: transformers' Mimi keeps no state between calls) code at least as many frames as
        that context, so each reads at most twice what it keeps; a file shorter is one window."""
        return math.ceil(self.encoder_context()[0] / self.config.hop_length)

    def _attention_frames(self) -> int:
        config = self.hf.config
        return config.num_hidden_layers * config.sliding_window   # transformer frames (encodec rate)

    def _encoder_reach(self) -> float:
        config = self.hf.config
        transformer_hop = self.config.hop_length // config.latent_stride
        return conv_reach(self.hf.encoder) + self._attention_frames() * transformer_hop

    def _decoder_reach(self) -> float:
        # the decoder starts at the latent rate, so conv_reach counts latent frames; its
        # transformer runs after the upsampling, latent_stride of its frames per latent frame
        return conv_reach(self.hf.decoder) + self._attention_frames() / self.hf.config.latent_stride

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        return self.hf.encoder(wav).latents

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        return self.hf.quantizer.encode(latents, n_q).transpose(0, 1)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hf.quantizer.decode(codes)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.hf.decoder(latents).audio_values

    @staticmethod
    def codec_config(config) -> CodecConfig:
        return CodecConfig(sample_rate=config.sampling_rate, channels=config.audio_channels,
                           ratios=(*config.upsampling_ratios, config.latent_stride), dimension=config.hidden_size,
                           n_quantizers=config.num_quantizers, codebook_size=config.codebook_size,
                           causal=bool(config.use_causal_conv), extra={"hf_model_type": "mimi"})


class DacFamily(HFCodecModel):
    """transformers' DacModel: non-causal convs (a bounded context on both sides), factorised
    l2-normalised RVQ; every n_q from 1 to n_codebooks is valid."""

    def _encoder_reach(self) -> float:
        return conv_reach(self.hf.encoder)

    def _decoder_reach(self) -> float:
        return conv_reach(self.hf.decoder)

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        # zeros up to a whole frame, as DacFeatureExtractor pads (the encoder alone drops the rest)
        return self.hf.encoder(nn.functional.pad(wav, (0, -wav.shape[-1] % self.config.hop_length)))

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        return self.hf.quantizer(latents, n_q)[1]

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hf.quantizer.from_codes(codes)[0]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.hf.decoder(latents)

    @staticmethod
    def codec_config(config) -> CodecConfig:
        return CodecConfig(sample_rate=config.sampling_rate, channels=1,
                           ratios=tuple(reversed(config.downsampling_ratios)), dimension=config.hidden_size,
                           n_quantizers=config.n_codebooks, codebook_size=config.codebook_size,
                           extra={"hf_model_type": "dac"})


class EncodecFamily(HFCodecModel):
    """transformers' EncodecModel without normalisation or chunking (the 24 kHz model). Its LSTM
    sees the whole input, so it runs whole inputs. Levels are chosen through the bandwidth the
    quantizer takes, so any n_q works, not only the published bandwidths (n_q 2, 4, 8, 16, 32 at 24 kHz)."""

    @property
    def causal(self) -> bool:
        return bool(self.hf.config.use_causal_conv)

    def _encoder_reach(self) -> float | None:
        return None if has_recurrence(self.hf.encoder) else conv_reach(self.hf.encoder)

    def _decoder_reach(self) -> float | None:
        return None if has_recurrence(self.hf.decoder) else conv_reach(self.hf.decoder)

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        return self.hf.encoder(wav)

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        # the quantizer keeps floor(bandwidth / kbps per level) levels: half a level more is n_q exactly
        kbps = (n_q + 0.5) * self.hf.config.frame_rate * self.hf.config.codebook_nbits / 1000
        return self.hf.quantizer.encode(latents, kbps).transpose(0, 1)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hf.quantizer.decode(codes.transpose(0, 1))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.hf.decoder(latents)

    @staticmethod
    def codec_config(config) -> CodecConfig:
        return CodecConfig(sample_rate=config.sampling_rate, channels=config.audio_channels,
                           ratios=tuple(config.upsampling_ratios), dimension=config.hidden_size,
                           n_quantizers=config.num_quantizers, codebook_size=config.codebook_size,
                           causal=bool(config.use_causal_conv), extra={"hf_model_type": "encodec"})


class XcodecFamily(HFCodecModel):
    """transformers' XcodecModel: a semantic model (HuBERT/WavLM, full attention) beside a DAC
    encoder; it quantizes audio only through `model.encode`, so latents are the audio itself and
    inputs run whole. Codes are the full-bandwidth codes' first n_q levels (an RVQ's levels do not
    depend on the ones after them), so every n_q works, not only the published bandwidths."""

    def _encoder_reach(self) -> None:
        return None

    def _decoder_reach(self) -> float:
        return conv_reach(self.hf.acoustic_decoder)

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        return wav

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        bandwidth = max(self.hf.config.target_bandwidths)
        return self.hf.encode(latents, bandwidth=bandwidth, return_dict=True).audio_codes[:, :n_q]

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hf.quantizer.decode(codes.transpose(0, 1))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        # XcodecModel.decode after its quantizer: project to the acoustic width, then DAC's decoder
        return self.hf.acoustic_decoder(self.hf.fc2(latents.transpose(1, 2)).transpose(1, 2))

    @staticmethod
    def codec_config(config) -> CodecConfig:
        return CodecConfig(sample_rate=config.sample_rate, channels=1, ratios=(config.hop_length,), dimension=1,
                           n_quantizers=config.num_quantizers, codebook_size=config.codebook_size,
                           extra={"hf_model_type": "xcodec"})


class Xcodec2Family(HFCodecModel):
    """transformers' Xcodec2Model (Llasa's codec): a w2v-BERT semantic encoder over mel features
    beside an acoustic encoder, one FSQ level of 65536 codes, a Vocos decoder with full attention.
    Its features come from its feature extractor, which normalises the mel bands over the whole
    input, so windows would change the codes: inputs run whole. The extractor pads one sample and
    then to whole frames, so an input of whole frames gets one frame of padding only; that last
    frame is dropped (the frames before it are the model's codes)."""

    feature_extractor = "Xcodec2FeatureExtractor"
    input_rate_field = "sampling_rate"   # the config's field for the rate of the audio it encodes

    def _encoder_reach(self) -> None:
        return None

    def _decoder_reach(self) -> None:
        return None

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        return wav

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        if n_q != 1:
            raise ValueError(f"{type(self).__name__} has one level, not {n_q}")
        rows = [row.float().cpu().numpy() for row in latents[:, 0]]
        inputs = self.features(rows, sampling_rate=self.config.sample_rate, return_tensors="pt")
        inputs = {name: value.to(latents.device) for name, value in inputs.items() if value is not None}
        codes = self.hf.encode(**inputs, return_dict=True).audio_codes.long()
        return codes[..., :math.ceil(latents.shape[-1] / self.config.hop_length)]

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hf.quantizer.from_codes(codes.transpose(1, 2)).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.hf.decode(latents=latents, return_dict=True).audio_values

    @classmethod
    def codec_config(cls, config) -> CodecConfig:
        return CodecConfig(sample_rate=getattr(config, cls.input_rate_field), channels=1,
                           ratios=tuple(reversed(config.downsampling_ratios)), dimension=config.quantization_dim,
                           n_quantizers=1, codebook_size=math.prod(config.quantization_levels),
                           extra={"hf_model_type": config.model_type})


class NeuCodecFamily(Xcodec2Family):
    """transformers' NeuCodecModel (NeuTTS's codec): XCodec2's encoder and quantizer on 16 kHz input
    (its own feature extractor), a decoder that makes 24 kHz audio (`output_sample_rate`, which
    code files record). Its encode codes whole frames only, as neuphonic's `neucodec` package does
    (neuphonic/neucodec@2454f320f1437325e5b72bf414c94f2dbfa9a48b neucodec/model.py, _prepare_audio
    and encode_code): both pad the input with 1 to hop zeros up to a whole frame, the mel branch
    then gives one frame fewer than the acoustic one when the input ended inside a frame, and the
    shorter is kept. The samples after the last whole frame still shape the codes (the mel
    features are normalised over them) but get none of their own: code files cover the whole
    frames (`length` = frames x hop) and decode to those."""

    feature_extractor = "NeuCodecFeatureExtractor"
    input_rate_field = "input_sampling_rate"
    whole_frames_only = True

    @property
    def output_sample_rate(self) -> int:
        return int(self.hf.config.output_sampling_rate)

    def quantize(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        if latents.shape[-1] < self.config.hop_length:
            raise UserError(f"NeuCodec codes whole frames only: the audio is shorter than one frame "
                            f"({self.config.hop_length} samples at {self.config.sample_rate} Hz)")
        return super().quantize(latents, n_q)
