"""Where long audio and long codes are cut: the one owner of window arithmetic.

A window codes `chunk_frames` frames and reads the model's receptive field beyond them
(`CodecModel.encoder_context` / `decoder_context`), so that the frames it keeps come out as one
pass over the whole input would give them (tests/test_model.py). Encode streaming, decode, the
batched encoder and train-codebook all take their windows from here, so they cut alike.

Also the segments of models that code their input in overlapping segments (EnCodec 48 kHz), whose
positions depend only on the length: the model cuts by them and code files are checked by them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # for the annotation only: code files check segments without importing torch
    from rvqtool.model.interface import CodecModel


class EncodeWindow(NamedTuple):
    first_frame: int    # the frames this window codes: [first_frame, end_frame)
    end_frame: int
    first_sample: int   # the samples it reads: [first_sample, end_sample), context included
    end_sample: int


class DecodeWindow(NamedTuple):
    first_frame: int    # the frames whose audio this window makes: [first_frame, end_frame)
    end_frame: int
    first_input: int    # the frames of codes it reads: [first_input, end_input), context included
    end_input: int


@dataclass(frozen=True)
class Windowing:
    hop_length: int
    chunk_frames: int
    encoder_context: tuple[int, int]   # samples (left, right), whole frames
    decoder_context: tuple[int, int]   # frames (left, right)

    @classmethod
    def for_model(cls, model: CodecModel, chunk_seconds: float) -> "Windowing":
        """Windows of `chunk_seconds` with the model's contexts; an unbounded context (an LSTM)
        becomes two chunks of samples (one chunk of frames): windows then only bound memory, and
        codes near their edges can differ from one pass. A model may ask for longer windows
        (`min_chunk_frames`: transformers' Mimi, whose 80 s of context each window reads)."""
        hop = model.config.hop_length
        chunk = max(1, round(chunk_seconds * model.config.frame_rate), getattr(model, "min_chunk_frames", 1))
        samples = model.encoder_context()
        frames = model.decoder_context()
        return cls(hop, chunk,
                   (2 * hop * chunk,) * 2 if samples is None else tuple(-(-s // hop) * hop for s in samples),
                   (chunk, chunk) if frames is None else tuple(frames))

    # ---- encoding ------------------------------------------------------------------------------
    def encode_windows(self, length: int) -> list[EncodeWindow]:
        """Every window of a signal of `length` samples (padded to whole frames), in order."""
        n_frames = math.ceil(length / self.hop_length)
        return [self.encode_window(first, n_frames) for first in range(0, n_frames, self.chunk_frames)]

    def encode_window(self, first: int, n_frames: int) -> EncodeWindow:
        """The window that starts at frame `first` of a signal of `n_frames` frames."""
        hop, (left, right) = self.hop_length, self.encoder_context
        end = min(first + self.chunk_frames, n_frames)
        return EncodeWindow(first, end, max(0, first * hop - left), min(end * hop + right, n_frames * hop))

    def full_window_ready(self, first: int, samples: int) -> bool:
        """Whether the full window from frame `first` can be cut once `samples` samples have arrived
        (it is then the same window whatever the signal's final length)."""
        return (first + self.chunk_frames) * self.hop_length + self.encoder_context[1] <= samples

    def first_sample_needed(self, first: int) -> int:
        """The first sample that the windows from frame `first` on read (what streaming keeps)."""
        return max(0, first * self.hop_length - self.encoder_context[0])

    def stream_pieces(self, n_frames: int) -> list[tuple[int, int]]:
        """The frames [first, end) a streaming model is fed at a time, `chunk_frames` each, in order
        (no context: the stream's state carries it)."""
        return [(first, min(first + self.chunk_frames, n_frames)) for first in range(0, n_frames, self.chunk_frames)]

    # ---- decoding ------------------------------------------------------------------------------
    def decode_windows(self, n_frames: int) -> list[DecodeWindow]:
        """Every window of `n_frames` frames of codes, in order."""
        left, right = self.decoder_context
        return [DecodeWindow(first, end, max(0, first - left), min(n_frames, end + right))
                for first in range(0, n_frames, self.chunk_frames)
                for end in (min(first + self.chunk_frames, n_frames),)]


# ---- segments ----------------------------------------------------------------------------------
def segments(length: int, segment_length: int | None, stride: int | None) -> list[tuple[int, int]]:
    """(start, stop) samples of each segment of a signal of `length` samples: one segment when
    `segment_length` is None or 0."""
    if not segment_length:
        return [(0, length)]
    return [(start, min(start + segment_length, length)) for start in range(0, length, stride)]


def segment_frames(spans: list[tuple[int, int]], hop_length: int) -> int:
    """Frames of codes that these segments make: each segment is padded to whole frames."""
    return sum(-(-(stop - start) // hop_length) for start, stop in spans)
