"""Orpheus TTS: Llama-3.2 3B over SNAC 24 kHz codes, 7 tokens per 12 Hz frame.

Audio token of position p (0..6) in a frame, code c: 128266 + p * 4096 + c (`<custom_token_N>`,
N = 10 + p * 4096 + c, after Llama's 128256 ids). Positions hold [c0_j, c1_2j, c2_4j, c2_4j+1,
c1_2j+1, c2_4j+2, c2_4j+3], the rows of our SNAC code files in order, so row r -> position r.

Training sequence (the fine-tuning data prep that Orpheus's README links):
  START_OF_HUMAN, BOS 128000, text ids, END_OF_TEXT 128009, END_OF_HUMAN,
  START_OF_AI, START_OF_SPEECH, audio ..., END_OF_SPEECH, END_OF_AI
where the text is "{speaker}: {text}" for multi-speaker data (metadata `speaker`), else the text.
The data prep encodes the text with the tokenizer's own BOS; here BOS is added by id, which is
the same for Orpheus's Llama-3 tokenizer.json and independent of any other post-processor.
Without a tokenizer the document is the AI turn alone: START_OF_AI ... END_OF_AI.

Not done: that data prep also drops every frame whose c0 equals the previous kept frame's
(`remove_duplicate_frames`); it changes the audio, so the codes are kept as encoded.
"""
from __future__ import annotations

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens.presets.base import Document, Preset, span

TEXT_VOCAB = 128256                  # Llama 3.2's ids; Orpheus's own start after them
START_OF_TEXT, END_OF_TEXT = 128000, 128009
START_OF_SPEECH, END_OF_SPEECH = TEXT_VOCAB + 1, TEXT_VOCAB + 2
START_OF_HUMAN, END_OF_HUMAN = TEXT_VOCAB + 3, TEXT_VOCAB + 4
START_OF_AI, END_OF_AI = TEXT_VOCAB + 5, TEXT_VOCAB + 6
PAD = TEXT_VOCAB + 7
AUDIO_START = TEXT_VOCAB + 10
POSITIONS, CODEBOOK = 7, 4096
OFFSETS = AUDIO_START + np.arange(POSITIONS, dtype=np.int64) * CODEBOOK     # [7]


class Orpheus(Preset):
    name = "orpheus"
    lm = "Orpheus TTS"
    codec = "SNAC 24 kHz"
    family = "snac_24khz"
    levels, rows, codebook_size = 3, POSITIONS, CODEBOOK
    sources = (
        "canopyai/Orpheus-TTS@835ac7cd1870fa1fa5e342e14260c2d68cabb2e7 "
        "orpheus_tts_pypi/orpheus_tts/decoder.py (turn_token_into_id, convert_to_audio)",
        "canopyai/Orpheus-TTS@835ac7cd1870fa1fa5e342e14260c2d68cabb2e7 "
        "orpheus_tts_pypi/orpheus_tts/engine_class.py (_format_prompt), finetune/config.yaml (pad_token 128263)",
        "unslothai/notebooks@087dc8d3afdc5d53b1259f4bfced895cd57ea466 "
        "nb/Orpheus_(3B)-TTS.ipynb (tokenise_audio, the special ids, create_input_ids)",
    )

    def audio_tokens(self, codes: np.ndarray) -> np.ndarray:
        """codes [1, 7, T] -> 7 T ids, frame by frame."""
        return (self.checked(codes)[0] + OFFSETS[:, None]).T.reshape(-1)

    def document(self, codes: np.ndarray, text: str | None = None, metadata: dict | None = None) -> Document:
        turn = [START_OF_AI, START_OF_SPEECH, *self.audio_tokens(codes), END_OF_SPEECH, END_OF_AI]
        if self.tokenizer is None:
            return Document(np.array(turn, np.int64))
        speaker = (metadata or {}).get("speaker")
        prompt = f"{speaker}: {text}" if speaker and text else text
        human = [START_OF_HUMAN, START_OF_TEXT, *self.encode_text(prompt), END_OF_TEXT, END_OF_HUMAN]
        return Document(np.array(human + turn, np.int64))

    def codes(self, tokens: np.ndarray, channels: int = 1) -> np.ndarray:
        self.channels_of(channels)
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        audio = span(tokens, START_OF_SPEECH, END_OF_SPEECH, "speech")
        audio = tokens if audio is None else audio
        if len(audio) % POSITIONS:
            raise UserError(f"{len(audio)} audio tokens is not a whole number of Orpheus frames (7 tokens each)")
        codes = audio.reshape(-1, POSITIONS).T - OFFSETS[:, None]               # [7, T]
        bad = np.argwhere((codes < 0) | (codes >= CODEBOOK))
        if len(bad):
            position, frame = bad[0]
            raise UserError(f"token {audio[frame * POSITIONS + position]} (frame {frame}, position {position}) is not "
                            f"an Orpheus audio token of position {position} "
                            f"({OFFSETS[position]}..{OFFSETS[position] + CODEBOOK - 1})")
        return self.framed(codes[None])

    def layout(self) -> dict:
        return {"audio_token": "128266 + position * 4096 + code, 7 positions a frame: "
                               "[c0_j, c1_2j, c2_4j, c2_4j+1, c1_2j+1, c2_4j+2, c2_4j+3] (row r = position r)",
                "audio_tokens": [AUDIO_START, AUDIO_START + POSITIONS * CODEBOOK],
                "specials": {"start_of_text": START_OF_TEXT, "end_of_text": END_OF_TEXT,
                             "start_of_speech": START_OF_SPEECH, "end_of_speech": END_OF_SPEECH,
                             "start_of_human": START_OF_HUMAN, "end_of_human": END_OF_HUMAN,
                             "start_of_ai": START_OF_AI, "end_of_ai": END_OF_AI, "pad": PAD},
                "sequence": "start_of_human start_of_text TEXT end_of_text end_of_human "
                            "start_of_ai start_of_speech AUDIO end_of_speech end_of_ai",
                "segment": "start_of_ai start_of_speech AUDIO end_of_speech end_of_ai"}
