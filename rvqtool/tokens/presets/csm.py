"""Sesame CSM: a Llama backbone over frames of 33 columns, 32 Mimi codebooks + 1 text column.

As Sesame's generator builds a segment (text, then its audio):
* one text frame per text id: audio columns 0, the text column the id; the text is
  "[{speaker}]{text}" (metadata `speaker`, 0 when absent) between <|begin_of_text|> and
  <|end_of_text|> (the template Sesame sets on the Llama-3.2 tokenizer);
* one audio frame per Mimi frame: the 32 codes (raw, 0..2047: the model adds codebook * 2051
  itself), the text column 0; then an EOS frame of zeros.
The model reads a frame's columns through a mask: text frames the text column only, audio frames
(and the EOS frame) the 32 audio columns only; `masks` rebuilds it from the document's
`text_frames`. Ids are stored frame by frame, 33 a frame. Without a tokenizer the document is
the audio frames and the EOS frame alone.
"""
from __future__ import annotations

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens.presets.base import Document, Preset

CODEBOOKS = 32
WIDTH = CODEBOOKS + 1            # audio columns, then the text column
CODEBOOK = 2048                  # Mimi's codes (CSM's audio_vocab_size is 2051)
TEXT_VOCAB = 128256              # CSM's text_vocab_size: text ids must lie below it
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
BOS_ID, EOS_ID = 128000, 128001


def masks(text_frames: int, frames: int) -> np.ndarray:
    """bool [frames, 33]: which columns of each frame the model reads."""
    mask = np.zeros((frames, WIDTH), bool)
    mask[:text_frames, -1] = True
    mask[text_frames:, :-1] = True
    return mask


class Csm(Preset):
    name = "csm"
    lm = "Sesame CSM"
    codec = "Mimi"
    family = "mimi"
    levels = rows = CODEBOOKS
    codebook_size = CODEBOOK
    sources = (
        "SesameAILabs/csm@2d720827843b653c4d67bb4445b1c0a4f59e646f generator.py "
        "(load_llama3_tokenizer, _tokenize_text_segment, _tokenize_audio, generate: EOS frame of zeros)",
        "SesameAILabs/csm@2d720827843b653c4d67bb4445b1c0a4f59e646f models.py (_embed_tokens, _embed_audio)",
    )

    def __init__(self, tokenizer=None):
        super().__init__(tokenizer)
        if tokenizer is not None:
            self.bos, self.eos = self.token_id(BOS, BOS_ID), self.token_id(EOS, EOS_ID)

    def audio_frames(self, codes: np.ndarray) -> np.ndarray:
        """codes [1, 32, T] -> int64 [T + 1, 33]: the audio frames and the EOS frame."""
        codes = self.checked(codes)[0]
        frames = np.zeros((codes.shape[1] + 1, WIDTH), np.int64)
        frames[:-1, :-1] = codes.T
        return frames

    def text_frames(self, text: str | None, speaker) -> np.ndarray:
        ids = [self.bos, *self.encode_text(f"[{speaker}]{text}" if text else None), self.eos]
        if max(ids) >= TEXT_VOCAB:
            raise UserError(f"the tokenizer gave id {max(ids)}: CSM's text ids lie below {TEXT_VOCAB}")
        frames = np.zeros((len(ids), WIDTH), np.int64)
        frames[:, -1] = ids
        return frames

    def document(self, codes: np.ndarray, text: str | None = None, metadata: dict | None = None) -> Document:
        audio = self.audio_frames(codes)
        if self.tokenizer is None:
            return Document(audio.reshape(-1), {"frame_width": WIDTH, "text_frames": 0})
        head = self.text_frames(text, (metadata or {}).get("speaker", 0))
        return Document(np.concatenate([head, audio]).reshape(-1), {"frame_width": WIDTH, "text_frames": len(head)})

    def codes(self, tokens: np.ndarray, channels: int = 1) -> np.ndarray:
        self.channels_of(channels)
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        if len(tokens) % WIDTH or len(tokens) < WIDTH:
            raise UserError(f"{len(tokens)} tokens is not a whole number of CSM frames (33 tokens each)")
        frames = tokens.reshape(-1, WIDTH)
        with_text = np.flatnonzero(frames[:, -1])
        text_frames = int(with_text[-1]) + 1 if len(with_text) else 0     # audio frames' text column is 0
        if (frames[:text_frames, :-1] != 0).any():
            raise UserError("CSM text frames hold audio columns (text and audio frames interleaved?)")
        if text_frames == len(frames) or (frames[-1] != 0).any():
            raise UserError("CSM audio frames must end with the EOS frame of zeros")
        audio = frames[text_frames:-1, :-1]
        if ((audio < 0) | (audio >= CODEBOOK)).any():
            raise UserError(f"CSM audio columns hold ids outside Mimi's codes 0..{CODEBOOK - 1}")
        return self.framed(audio.T[None])

    def layout(self) -> dict:
        return {"frame_width": WIDTH,
                "audio_token": "code (0..2047) in column k of an audio frame = codebook k; column 32 = text",
                "specials": {"bos": BOS_ID, "eos": EOS_ID, "eos_frame": "33 zeros after the audio frames"},
                "sequence": f"text frames [0 x 32, id] for {BOS} [speaker]TEXT {EOS}, audio frames "
                            "[32 codes, 0], the EOS frame; mask: text frames column 32, the others columns 0..31",
                "segment": "audio frames [32 codes, 0], the EOS frame"}
