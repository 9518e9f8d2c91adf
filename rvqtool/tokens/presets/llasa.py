"""Llasa: Llama 3.2 (1B/3B/8B) over XCodec2's single codebook of 65536 codes at 50 Hz.

Llasa's training adds 8 markers after Llama's 128256 ids (TEXT_GENERATION_START/END,
TEXT_UNDERSTANDING_START/END, SPEECH_GENERATION_START/END, SPEECH_UNDERSTANDING_START/END:
128256..128263) and then the speech tokens `<|s_N|>` (id 128264 + N). A training sequence, as its
memmap script writes them:
  ids of "<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>" (no BOS),
  SPEECH_GENERATION_START, 128264 + code ..., SPEECH_GENERATION_END
(that script then pads or cuts every sequence to 2048 ids; here that is left to the trainer).
Without a tokenizer the document is the speech part alone, from SPEECH_GENERATION_START on.
"""
from __future__ import annotations

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens.presets.base import Document, Preset, span

TEXT_VOCAB = 128256
MARKERS = ("<|TEXT_GENERATION_START|>", "<|TEXT_GENERATION_END|>",
           "<|TEXT_UNDERSTANDING_START|>", "<|TEXT_UNDERSTANDING_END|>",
           "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>",
           "<|SPEECH_UNDERSTANDING_START|>", "<|SPEECH_UNDERSTANDING_END|>")
MARKER_IDS = {marker: TEXT_VOCAB + i for i, marker in enumerate(MARKERS)}
SPEECH_START = MARKER_IDS["<|SPEECH_GENERATION_START|>"]
SPEECH_END = MARKER_IDS["<|SPEECH_GENERATION_END|>"]
AUDIO_START = TEXT_VOCAB + len(MARKERS)          # 128264: <|s_0|>
CODEBOOK = 65536


class Llasa(Preset):
    name = "llasa"
    lm = "Llasa"
    codec = "XCodec2"
    family = "xcodec2"
    levels = rows = 1
    codebook_size = CODEBOOK
    sources = (
        "zhenye234/LLaSA_training@ef5c2605927190ba40656d09b3a9e10df6631149 data_instruction/get_memmap_from_token.py "
        "(process_audio_id, process_data: base_num = len(tokenizer) after the 8 markers)",
        "zhenye234/LLaSA_training@ef5c2605927190ba40656d09b3a9e10df6631149 train_tts.py "
        "(the 8 markers, then <|s_0|>..<|s_65535|>)",
    )

    def __init__(self, tokenizer=None):
        super().__init__(tokenizer)
        if tokenizer is not None:
            for marker in ("<|TEXT_UNDERSTANDING_START|>", "<|TEXT_UNDERSTANDING_END|>",
                           "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>"):
                self.token_id(marker, MARKER_IDS[marker])
            if tokenizer.token_to_id("<|s_0|>") is not None:
                self.token_id("<|s_0|>", AUDIO_START)

    def document(self, codes: np.ndarray, text: str | None = None, metadata: dict | None = None) -> Document:
        speech = [SPEECH_START, *(self.checked(codes)[0, 0] + AUDIO_START), SPEECH_END]
        if self.tokenizer is None:
            return Document(np.array(speech, np.int64))
        prompt = f"<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>" if text else None
        return Document(np.array(self.encode_text(prompt) + speech, np.int64))

    def codes(self, tokens: np.ndarray, channels: int = 1) -> np.ndarray:
        self.channels_of(channels)
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        audio = span(tokens, SPEECH_START, SPEECH_END, "speech generation")
        audio = tokens if audio is None else audio
        codes = audio - AUDIO_START
        bad = np.flatnonzero((codes < 0) | (codes >= CODEBOOK))
        if len(bad):
            raise UserError(f"token {audio[bad[0]]} is not a Llasa speech token <|s_N|> "
                            f"({AUDIO_START}..{AUDIO_START + CODEBOOK - 1})")
        return self.framed(codes[None, None])

    def layout(self) -> dict:
        return {"audio_token": "128264 + code (<|s_code|>)",
                "audio_tokens": [AUDIO_START, AUDIO_START + CODEBOOK],
                "specials": {marker.strip("<|>").lower(): i for marker, i in MARKER_IDS.items()},
                "sequence": "TEXT_UNDERSTANDING_START TEXT TEXT_UNDERSTANDING_END "
                            "SPEECH_GENERATION_START AUDIO SPEECH_GENERATION_END",
                "segment": "SPEECH_GENERATION_START AUDIO SPEECH_GENERATION_END"}
