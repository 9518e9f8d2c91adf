"""Moshi: a text stream and 8 Mimi levels per audio stream, one step per 12.5 Hz frame.

Moshi's LM trains on `codes` [1 + 8 x streams, T] (LMModel.forward): row 0 the text stream,
then 8 Mimi levels per channel (moshi-finetune: the left channel is Moshi's voice, the right the
user's, so Moshi 7B takes stereo files, 17 rows; a mono file makes the 9 rows of one stream).
The acoustic delays are the model's own (LMModel.delays, applied in forward), so the codes are
stored undelayed, as moshi-finetune hands them over. Ids are stored step by step, 1 + 8 x
streams a step (a trainer reshapes to [T, K] and transposes).

The text stream is built as moshi-finetune's Interleaver does (keep_main_only, as its train.py
sets it): word timestamps (metadata `alignments`, moshi-finetune's JSON form
[[word, [start, end], speaker], ...]) of the main speaker `SPEAKER_MAIN`, each word's ids
placed from its start frame, text padding (3) elsewhere inside words and between them, and the
padding step just before a word marked end-of-padding (0). Without a tokenizer (or for a file
without alignments, as moshi-finetune does) the text row is the zero token -1: no input and no
loss for the text. A plain transcript cannot be placed on frames, so a tokenizer without
alignments is refused. The text ids are those of Moshi's SentencePiece model, here read from its
tokenizer.json conversion.
"""
from __future__ import annotations

import json
from collections import deque

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens.presets.base import Document, Preset

LEVELS, CODEBOOK, FRAME_RATE = 8, 2048, 12.5
TEXT_PADDING, END_OF_TEXT_PADDING, ZERO = 3, 0, -1
MAIN_SPEAKER = "SPEAKER_MAIN"


def read_alignments(value) -> list[tuple[str, float, float, str]]:
    """moshi-finetune's alignments ([[word, [start, end], speaker], ...], or that as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UserError(f"moshi alignments: not JSON ({exc})")
    try:
        return [(str(word), float(start), float(end), str(speaker)) for word, (start, end), speaker in value]
    except (TypeError, ValueError) as exc:
        raise UserError(f"moshi alignments must be [[word, [start, end], speaker], ...] ({exc})")


class Moshi(Preset):
    name = "moshi"
    lm = "Moshi"
    codec = "Mimi"
    family = "mimi"
    levels = rows = LEVELS
    codebook_size = CODEBOOK
    channels = (1, 2)
    dtype = np.dtype(np.int32)     # the zero token is -1
    sources = (
        "kyutai-labs/moshi@e6a55d2722a65870ef52a6c9f6ecfc0e90f38362 moshi/moshi/models/lm.py "
        "(LMModel.forward: codes [B, 1 + n_q, T], delays applied inside; existing_text_padding_id 3, "
        "existing_text_end_padding_id 0, zero_token_id -1)",
        "kyutai-labs/moshi@e6a55d2722a65870ef52a6c9f6ecfc0e90f38362 moshi/moshi/models/loaders.py "
        "(_lm_kwargs: n_q 16, dep_q 8, text_card 32000, delays)",
        "kyutai-labs/moshi-finetune@2acc879fe7c48f885a18f6cc9548bccb2674d87b finetune/data/interleaver.py "
        "(Interleaver.build_token_stream, InterleavedTokenizer.__call__)",
        "kyutai-labs/moshi-finetune@2acc879fe7c48f885a18f6cc9548bccb2674d87b train.py (Interleaver(..., "
        "keep_main_only=True)), README.md (stereo: left channel Moshi, right the user)",
    )

    def text_stream(self, alignments: list[tuple[str, float, float, str]], frames: int) -> np.ndarray:
        """The text row for `frames` steps, as moshi-finetune's Interleaver lays it out (its in-word
        padding is the text padding there, so steps inside a word need nothing of their own).
        One step more is laid out and cut, as moshi-finetune cuts its longer stream: a word
        starting just after the end still marks the last step end-of-padding."""
        words = sorted((a for a in alignments if a[3] == MAIN_SPEAKER), key=lambda a: a[1])
        words = [(self.encode_text(word.strip()) if word.strip() else [], start)
                 for word, start, end, _ in words if start < end]
        row = [TEXT_PADDING] * (frames + 1)
        pending: deque[int] = deque()
        next_word = 0
        for t in range(frames + 1):
            while next_word < len(words) and words[next_word][1] * FRAME_RATE < t + 1:
                pending = deque(words[next_word][0])
                next_word += 1
            if pending:
                if t > 0 and row[t - 1] == TEXT_PADDING:
                    row[t - 1] = END_OF_TEXT_PADDING
                row[t] = pending.popleft()
        return np.array(row[:frames], np.int64)

    def document(self, codes: np.ndarray, text: str | None = None, metadata: dict | None = None) -> Document:
        codes = self.checked(codes)
        channels, _, frames = codes.shape
        grid = np.full((1 + channels * LEVELS, frames), ZERO, np.int64)
        grid[1:] = codes.reshape(channels * LEVELS, frames)
        stream = "zero"
        if self.tokenizer is not None:
            alignments = (metadata or {}).get("alignments")
            if alignments is None:
                raise UserError("--preset moshi with a tokenizer needs each file's word timestamps (metadata "
                                "'alignments': [[word, [start, end], speaker], ...], as moshi-finetune's annotate.py "
                                "writes them); without --tokenizer the text stream is left empty")
            grid[0] = self.text_stream(read_alignments(alignments), frames)
            stream = "aligned"
        return Document(grid.T.reshape(-1), {"streams": len(grid), "text_stream": stream})

    def codes(self, tokens: np.ndarray, channels: int = 1) -> np.ndarray:
        width = 1 + self.channels_of(channels) * LEVELS
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        if len(tokens) % width or not len(tokens):
            raise UserError(f"{len(tokens)} tokens is not a whole number of Moshi steps ({width} tokens each "
                            f"for {channels} channel(s))")
        audio = tokens.reshape(-1, width).T[1:]                                  # [channels * 8, T]
        if ((audio < 0) | (audio >= CODEBOOK)).any():
            raise UserError(f"Moshi audio rows hold ids outside Mimi's codes 0..{CODEBOOK - 1} "
                            "(not Moshi tokens, or another channel count?)")
        return self.framed(audio.reshape(channels, LEVELS, -1))

    def layout(self) -> dict:
        return {"step_width": "1 + 8 x channels (9 mono, 17 stereo)",
                "audio_token": "code (0..2047) in row 1 + 8 x channel + level of a step; row 0 = text",
                "specials": {"text_padding": TEXT_PADDING, "end_of_text_padding": END_OF_TEXT_PADDING,
                             "zero": ZERO},
                "delays": "none stored: Moshi's LM applies its own (LMModel.delays)",
                "sequence": "text row from word alignments of SPEAKER_MAIN (moshi-finetune's Interleaver)",
                "segment": "text row all zero (-1)"}
