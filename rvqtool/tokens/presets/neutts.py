"""NeuTTS (Air, Nano): a Qwen-based LM over NeuCodec's single codebook of 65536 codes at 50 Hz,
each code the added token `<|speech_N|>`.

A training sequence is the tokenizer's encoding of the string its fine-tuning script builds:
  "user: Convert the text to speech:<|TEXT_PROMPT_START|>{phones}<|TEXT_PROMPT_END|>\\n"
  "assistant:<|SPEECH_GENERATION_START|><|speech_N|>...<|SPEECH_GENERATION_END|>"
so every id, the speech tokens' too, comes from the tokenizer (NeuTTS has no fixed offset).
{phones} is espeak's IPA there (phonemizer, words joined by single spaces): the manifest's text
column is used as it is, so it should hold the phonemes. Without a tokenizer the document is the
codes themselves, each id the N of `<|speech_N|>`, with no markers (their ids are the
tokenizer's).
"""
from __future__ import annotations

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens.presets.base import Document, Preset, span

CODEBOOK = 65536
PROMPT = "user: Convert the text to speech:<|TEXT_PROMPT_START|>{phones}<|TEXT_PROMPT_END|>\nassistant:"
SPEECH_START, SPEECH_END = "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>"


def speech_token(code: int) -> str:
    return f"<|speech_{code}|>"


class NeuTTS(Preset):
    name = "neutts"
    lm = "NeuTTS"
    codec = "NeuCodec"
    family = "neucodec"
    levels = rows = 1
    codebook_size = CODEBOOK
    ids_need_tokenizer = True      # <|speech_N|> ids are the tokenizer's own
    sources = (
        "neuphonic/neutts-air@d62412dd20e17a204f17ab8d779569662dde0c76 examples/finetune.py (preprocess_sample)",
        "neuphonic/neutts-air@d62412dd20e17a204f17ab8d779569662dde0c76 TRAINING.md (codec tokens <|speech_i|>, "
        "codebook_size 65536 in examples/finetune_config.yaml)",
        "neuphonic/neutts-air@d62412dd20e17a204f17ab8d779569662dde0c76 neutts/neutts.py (_decode: <|speech_N|> -> N)",
    )

    def __init__(self, tokenizer=None):
        super().__init__(tokenizer)
        if tokenizer is None:
            return
        self.speech_start, self.speech_end = self.token_id(SPEECH_START), self.token_id(SPEECH_END)
        self.token_id("<|TEXT_PROMPT_START|>"), self.token_id("<|TEXT_PROMPT_END|>")
        ids = [tokenizer.token_to_id(speech_token(code)) for code in range(CODEBOOK)]
        missing = [code for code, i in enumerate(ids) if i is None]
        if missing:
            raise UserError(f"the tokenizer has no {speech_token(missing[0])} token ({len(missing)} of the "
                            f"{CODEBOOK} speech tokens missing): --preset neutts needs NeuTTS's own tokenizer.json")
        self.speech_ids = np.array(ids, np.int64)                      # code -> id
        self.code_of = np.full(int(self.speech_ids.max()) + 1, -1, np.int64)
        self.code_of[self.speech_ids] = np.arange(CODEBOOK)            # id -> code, -1 for other ids

    def document(self, codes: np.ndarray, text: str | None = None, metadata: dict | None = None) -> Document:
        codes = self.checked(codes)[0, 0]
        if self.tokenizer is None:
            return Document(codes.copy(), {"audio_token": "<|speech_{id}|>"})
        if not text:
            raise UserError("--preset neutts with a tokenizer needs each file's text (its phonemes) in the manifest")
        chat = PROMPT.format(phones=text) + SPEECH_START + "".join(map(speech_token, codes.tolist())) + SPEECH_END
        tokens = np.array(self.tokenizer.encode(chat).ids, np.int64)
        speech = np.concatenate([[self.speech_start], self.speech_ids[codes], [self.speech_end]])
        starts = np.flatnonzero(tokens == self.speech_start)
        if len(starts) != 1 or not np.array_equal(tokens[starts[0]:], speech):
            raise UserError("the tokenizer does not keep <|speech_N|> and the speech markers as single tokens: "
                            "not NeuTTS's tokenizer.json")
        return Document(tokens)

    def codes(self, tokens: np.ndarray, channels: int = 1) -> np.ndarray:
        self.channels_of(channels)
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        if self.tokenizer is None:
            if ((tokens < 0) | (tokens >= CODEBOOK)).any():
                raise UserError(f"NeuTTS speech indices lie in 0..{CODEBOOK - 1} (tokens made with a tokenizer "
                                "need it to be read back)")
            return self.framed(tokens[None, None])
        audio = span(tokens, self.speech_start, self.speech_end, "speech generation")
        audio = tokens if audio is None else audio
        known = (audio >= 0) & (audio < len(self.code_of))
        codes = np.full(len(audio), -1, np.int64)
        codes[known] = self.code_of[audio[known]]
        bad = np.flatnonzero(codes < 0)
        if len(bad):
            raise UserError(f"token {audio[bad[0]]} is not a NeuTTS speech token <|speech_N|> of this tokenizer")
        return self.framed(codes[None, None])

    def layout(self) -> dict:
        facts = {"audio_token": "<|speech_code|>: the tokenizer's id of it" if self.tokenizer is not None
                 else "code itself: the N of <|speech_N|> (map through NeuTTS's tokenizer)",
                 "sequence": "tokenizer(" + PROMPT.format(phones="TEXT") + SPEECH_START + "AUDIO" + SPEECH_END + ")",
                 "segment": "AUDIO as speech indices"}
        if self.tokenizer is not None:
            facts["specials"] = {"speech_generation_start": self.speech_start, "speech_generation_end": self.speech_end}
            facts["audio_tokens"] = [int(self.speech_ids.min()), int(self.speech_ids.max()) + 1]
        return facts
