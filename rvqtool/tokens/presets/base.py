"""What every preset is: the codes it takes (model family, levels, codebook size, channels), the
ids it makes of them (`document`), and the way back (`codes`), with the layout described for
vocab.json (`describe`).

Codes come as code files hold them: int [channels, rows, T], rows = levels for RVQ codecs (for
SNAC the 7 rows of a coarse frame, see rvqtool/model/snac.py). A `Document` is one file's ids:
with a tokenizer, a whole training sequence in the LM's prompt format; without one, the audio
segment alone (the part of that sequence that does not depend on the text). The way back
refuses ids that are not audio tokens of the layout, so tokens from another preset or model
never decode into noise."""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens.presets import text as text_ids

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class Document:
    tokens: np.ndarray                            # int64 [n], in the LM's id space
    metadata: dict = field(default_factory=dict)  # what a trainer needs beside the ids (frame width, ...)


def family_matches(model: str, family: str) -> bool:
    """Whether a model name (`snac_24khz`, `hf:kyutai/mimi`, ...) names `family` as a whole word."""
    name = model.lower().replace("-", "_")
    return re.search(rf"(?<![a-z0-9]){re.escape(family)}(?![a-z0-9])", name) is not None


def span(tokens: np.ndarray, start: int, end: int, what: str) -> np.ndarray | None:
    """The ids between the one `start` and the one `end` after it; None when `start` is absent."""
    starts, ends = np.flatnonzero(tokens == start), np.flatnonzero(tokens == end)
    if not len(starts):
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise UserError(f"these tokens hold {len(starts)} start and {len(ends)} end markers of {what} "
                        "(one of each, in order, expected)")
    return tokens[starts[0] + 1:ends[0]]


class Preset(ABC):
    name: str
    lm: str                        # the LM, in words
    codec: str                     # its codec, in words
    family: str                    # the word a model name must hold (see `family_matches`)
    levels: int                    # n_q the LM was trained on
    rows: int                      # rows per frame of such codes (= levels but for SNAC)
    codebook_size: int
    channels: tuple[int, ...] = (1,)
    dtype: np.dtype = np.dtype(np.uint32)
    sources: tuple[str, ...] = ()  # the files (repository@commit path) the layout was read from
    ids_need_tokenizer = False     # whether a sequence's audio ids map back to codes only through its tokenizer

    def __init__(self, tokenizer: "Tokenizer | None" = None):
        self.tokenizer = tokenizer

    # ---- what the codes must be ------------------------------------------------------------
    def needs(self) -> str:
        return f"{self.codec} codes ({self.levels} level{'s' * (self.levels > 1)} of {self.codebook_size} codes)"

    def check(self, model: str, n_q: int, codebook_size: int, channels: int = 1) -> None:
        """Refuse codes this LM was not trained on, before anything is encoded."""
        problems = []
        if not family_matches(model, self.family):
            problems.append(f"model {model}")
        if n_q != self.levels:
            problems.append(f"{n_q} levels")
        if codebook_size != self.codebook_size:
            problems.append(f"{codebook_size} codes per level")
        if channels not in self.channels:
            problems.append(f"{channels} channels")
        if problems:
            allowed = " or ".join(map(str, self.channels))
            raise UserError(f"--preset {self.name} ({self.lm}) needs {self.needs()}, {allowed} channel(s); "
                            f"these codes have {', '.join(problems)}")

    def checked(self, codes: np.ndarray) -> np.ndarray:
        """codes as int64 [channels, rows, T], refused when their shape or values do not fit."""
        codes = np.asarray(codes)
        if codes.ndim != 3 or codes.shape[1] != self.rows or codes.shape[0] not in self.channels \
                or not np.issubdtype(codes.dtype, np.integer):
            raise UserError(f"--preset {self.name} takes integer codes [channels, {self.rows}, T] "
                            f"({', '.join(map(str, self.channels))} channel(s)), got {codes.dtype} {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise UserError(f"--preset {self.name}: codes outside 0..{self.codebook_size - 1}")
        return codes.astype(np.int64)

    @staticmethod
    def framed(codes: np.ndarray) -> np.ndarray:
        """codes read back from tokens, refused when they hold no frame."""
        if codes.shape[-1] == 0:
            raise UserError("no audio frame in these tokens")
        return codes

    def channels_of(self, channels: int) -> int:
        if channels not in self.channels:
            allowed = " or ".join(map(str, self.channels))
            raise UserError(f"--preset {self.name} holds {allowed} channel(s), not {channels}")
        return channels

    # ---- the text side ---------------------------------------------------------------------
    def encode_text(self, text: str | None) -> list[int]:
        if not text:
            raise UserError(f"--preset {self.name} with a tokenizer needs each file's text (a manifest's text column)")
        assert self.tokenizer is not None
        return text_ids.encode(self.tokenizer, text)

    def token_id(self, token: str, expected: int | None = None) -> int:
        assert self.tokenizer is not None
        return text_ids.token_id(self.tokenizer, token, self.name, expected)

    # ---- the layout ------------------------------------------------------------------------
    @abstractmethod
    def document(self, codes: np.ndarray, text: str | None = None, metadata: dict | None = None) -> Document:
        """One file's codes [channels, rows, T] (and its text, its manifest metadata) -> its ids."""

    def document_length(self, frames: int, channels: int = 1, text: str | None = None,
                        metadata: dict | None = None) -> int:
        """Ids in the document of a file of `frames` frames, before encoding it (for planning
        shards): no layout's length depends on the code values, so all-zero codes tell it."""
        return len(self.document(np.zeros((channels, self.rows, frames), np.int64), text, metadata).tokens)

    @abstractmethod
    def codes(self, tokens: np.ndarray, channels: int = 1) -> np.ndarray:
        """A document's ids (a whole sequence, an audio segment, or bare audio tokens) -> codes
        int64 [channels, rows, T]; refuses ids that are not this layout's audio tokens."""

    @abstractmethod
    def layout(self) -> dict:
        """The id layout, for vocab.json: audio token formula, specials, framing."""

    def describe(self) -> dict:
        facts = {"preset": self.name, "lm": self.lm, "codec": self.codec, "model_family": self.family,
                 "n_q": self.levels, "rows": self.rows, "codebook_size": self.codebook_size,
                 "channels": list(self.channels), "dtype": self.dtype.name,
                 "document": "sequence" if self.tokenizer is not None else "audio segment",
                 **self.layout(), "sources": list(self.sources)}
        if self.tokenizer is not None:
            facts["tokenizer_sha256"] = text_ids.fingerprint(self.tokenizer)
        return facts
