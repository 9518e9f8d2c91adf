"""The contract between a codec family's model and `Codec`: what a new family implements.

A family's model is a `torch.nn.Module` (Codec moves it to a device and puts it in eval mode) that
has the members of `CodecModel` below. `Codec` uses nothing else: it never reaches into an
encoder or a quantizer, so windowing, streaming, code files and tokens work for every family alike.

Shapes: B is a batch (Codec puts the channels of a split file, or the windows of a batch, there),
C the model's channels (`config.channels`: 1, or 2 for a stereo model), S samples, D the latent
dimension, T frames, n_q levels. Codes are int64 in [0, config.codebook_size).

Windowing: unless `whole_input` is true, Codec cuts long audio into windows of whole frames,
widened by the contexts the model reports, and keeps the frames of each window's middle; windowed
codes then equal whole-input codes (tests/test_model.py). A context is (left, right): samples for
the encoder, frames for the decoder, as many as can reach an output on that side (a causal model
says (n, 0)); None means unbounded (an LSTM): Codec then uses a wide context, and codes near window
edges may differ from one pass. A model whose reference runs the whole input at once (and whose
codes would change if cut) sets `whole_input`; Codec then hands it the whole input in one call.
A model whose context is long may set `min_chunk_frames`, the fewest frames a window codes, so
that windows do not each read many times what they keep. A whole-input model whose reference codes
whole frames only (NeuCodec) sets `whole_frames_only`: the codes of S samples have floor(S / hop)
frames (the samples after the last whole frame shape them but get no code of their own), and a
code file covers those frames' samples.

Optional protocols below, which Codec checks once: `SegmentedCodecModel` (EnCodec 48 kHz),
`StreamingCodecModel` (Mimi: streams with state instead of windows), `MultiRateCodecModel` (SNAC:
levels at different rates as rows), `NoisyDecoderModel` (SNAC: a decoder that draws noise) and
`ResamplingDecoderModel` (NeuCodec: audio out at another rate than in).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from rvqtool.config import CodecConfig


class CodecModel(Protocol):
    config: CodecConfig  # sample_rate, channels, hop_length, frame_rate, n_quantizers, codebook_size
    whole_input: bool    # True: run in one pass over the whole input (no windows)

    def encode_latents(self, wav: Tensor) -> Tensor:
        """wav [B, C, S] -> latents [B, D, ceil(S / hop)]; the last partial frame padded as the
        family's reference pads it."""

    def quantize(self, latents: Tensor, n_q: int) -> Tensor:
        """latents [B, D, T] -> codes [B, n_q, T] (int64), the first n_q levels."""

    def dequantize(self, codes: Tensor) -> Tensor:
        """codes [B, n_q, T] (any prefix of the levels) -> latents [B, D, T]."""

    def decode_latents(self, latents: Tensor) -> Tensor:
        """latents [B, D, T] -> wav [B, C, T * hop]."""

    def encoder_context(self) -> tuple[int, int] | None:
        """Samples needed (left, right) of a window for its frames to come out exact; None: unbounded."""

    def decoder_context(self) -> tuple[int, int] | None:
        """Frames needed (left, right) of a window for its samples to come out exact; None: unbounded."""


class EncoderQuantizerDecoder(nn.Module):
    """A base for models made of three modules, `encoder` (wav -> latents), `quantizer`
    (`encode(latents, n_q)` -> codes [B, n_q, T], `decode(codes)` -> latents) and `decoder`
    (latents -> wav): the interface's four coding methods, delegated to them. A model still sets
    `config` and `whole_input` and says its contexts; it overrides what its parts do otherwise."""

    encoder: nn.Module
    quantizer: nn.Module
    decoder: nn.Module

    def encode_latents(self, wav: Tensor) -> Tensor:
        return self.encoder(wav)

    def quantize(self, latents: Tensor, n_q: int) -> Tensor:
        return self.quantizer.encode(latents, n_q)

    def dequantize(self, codes: Tensor) -> Tensor:
        return self.quantizer.decode(codes)

    def decode_latents(self, latents: Tensor) -> Tensor:
        return self.decoder(latents)


@runtime_checkable
class SegmentedCodecModel(CodecModel, Protocol):
    """A whole-input model that codes its input in overlapping segments, each normalised by a
    scale that the code file keeps (EnCodec 48 kHz, as its reference does); Codec uses these two
    methods instead of the four above for its one pass. `segment_length` and `segment_stride`
    (samples) are None when the input is one segment."""

    segment_length: int | None
    segment_stride: int | None

    def encode_segments(self, wav: Tensor, n_q: int) -> tuple[Tensor, list[float] | None]:
        """wav [1, C, S] -> codes [1, n_q, frames of all segments] and each segment's scale (or None)."""

    def decode_segments(self, codes: Tensor, length: int, scales: list[float] | None) -> Tensor:
        """codes [1, n_q, frames of all segments] -> wav [1, C, length], segments cross-faded."""


class EncoderStream(Protocol):
    def feed(self, wav: Tensor) -> Tensor:
        """wav [B, 1, k x hop] (k >= 1), the next samples in order -> latents [B, D, k]."""


class DecoderStream(Protocol):
    def feed(self, latents: Tensor) -> Tensor:
        """latents [B, D, k] (k >= 1), the next frames in order -> wav [B, 1, k x hop]."""


@runtime_checkable
class StreamingCodecModel(CodecModel, Protocol):
    """A model whose windows without state would need more context than is worth reading (Mimi:
    ~160 s): it keeps state instead. Codec then feeds each file (or a batch of signals of one
    length) through one stream per direction, `chunk_frames` frames at a time; any split gives
    the whole pass's codes, and the state has a fixed size, so memory stays flat."""

    def encoder_stream(self, batch: int) -> EncoderStream:
        """A new stream of `batch` signals."""

    def decoder_stream(self, batch: int) -> DecoderStream:
        """A new stream of `batch` latent sequences."""


@runtime_checkable
class MultiRateCodecModel(CodecModel, Protocol):
    """A model whose levels run at different rates (SNAC): level l has `multiples[l]` codes per
    coarse frame (1 first), stored as rows at the coarse rate (`config.hop_length`), so codes are
    [B, rows(n_q), T]; `n_q` still counts levels. Its latents have `latent_frames_per_frame`
    frames per coarse frame, and the codes of S samples have `frames(S)` frames, a multiple of
    `frame_multiple` (the input is padded to whole units of that many frames)."""

    multiples: tuple[int, ...]
    latent_frames_per_frame: int
    frame_multiple: int

    def rows(self, n_q: int) -> int:
        """Rows of the codes of the first `n_q` levels."""

    def level_rows(self, n_q: int) -> list[int]:
        """Indices, among the rows of all levels, of the rows of the first `n_q` levels."""

    def frames(self, samples: int) -> int:
        """Coarse frames of the codes of `samples` samples."""


@runtime_checkable
class NoisyDecoderModel(CodecModel, Protocol):
    """A model whose decoder adds random noise (SNAC): `decode_latents` draws it from a generator
    seeded 0, and a decoding window draws it from one seeded by where the window starts, so the
    audio is the same on every run and each window gets its own noise, not the first window's."""

    def decode_window(self, latents: Tensor, first_frame: int) -> Tensor:
        """`decode_latents` of the latents of the window that starts at frame `first_frame`."""


@runtime_checkable
class ResamplingDecoderModel(CodecModel, Protocol):
    """A model whose decoder makes audio at another rate than its encoder takes (NeuCodec: 16 kHz
    in, 24 kHz out): `decode_latents` gives T x hop x output_sample_rate / config.sample_rate
    samples, a whole number per frame. Code files record that rate, so decoding needs no flags."""

    output_sample_rate: int
