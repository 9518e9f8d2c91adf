"""The vocabulary of a token corpus, saved as `vocab.json`: everything needed to map tokens back
to (level, code) and codes back to audio.

Ids, from `offset` (`--vocab-offset`, to sit after an existing text vocabulary) up:
audio tokens [offset, offset + n_q * codebook_size) (token = offset + level * codebook_size + code),
then PAD, BOS, EOS and, when asked for, SEP. A document is [BOS] body [EOS] [SEP]; BOS and EOS
can be left out, SEP (a separator after every file) is off unless asked for.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.codes import Codes, CodesMeta
from rvqtool.tokens import patterns

FORMAT = "rvqtool-vocab"
VERSION = 1
PER_FILE = ("length", "source_sample_rate")   # CodesMeta fields that vary per file, kept per document
# where the model was loaded from: differs from machine to machine, so it is never part of a corpus
# (the model is its name and SHA-256); vocab.json written before this may still hold it
HINTS = ("model_path",)


@dataclass(frozen=True)
class Vocab:
    pattern: str
    n_q: int
    codebook_size: int
    offset: int = 0
    bos: bool = True
    eos: bool = True
    sep: bool = False
    codes_meta: dict = field(default_factory=dict)   # the model-wide CodesMeta fields, n_q set to ours

    @classmethod
    def for_codes(cls, meta: CodesMeta, pattern: str, n_q: int, **specials) -> "Vocab":
        """The vocabulary for codes like `meta`'s, cut to the first `n_q` levels."""
        template = {k: v for k, v in meta.to_dict().items() if k not in PER_FILE + HINTS}
        template["n_q"] = n_q
        return cls(pattern, n_q, meta.codebook_size, codes_meta=template, **specials)

    # ---- ids -------------------------------------------------------------------------------
    @property
    def audio_size(self) -> int:
        return self.n_q * self.codebook_size

    @property
    def pad_id(self) -> int:
        return self.offset + self.audio_size

    @property
    def bos_id(self) -> int:
        return self.pad_id + 1

    @property
    def eos_id(self) -> int:
        return self.pad_id + 2

    @property
    def sep_id(self) -> int | None:
        return self.pad_id + 3 if self.sep else None

    @property
    def size(self) -> int:
        return self.pad_id + (4 if self.sep else 3)

    @property
    def dtype(self) -> np.dtype:
        """uint16 when every id fits, else uint32."""
        return np.dtype(np.uint16) if self.size <= 2 ** 16 else np.dtype(np.uint32)

    # ---- documents -------------------------------------------------------------------------
    def document_length(self, frames: int) -> int:
        return patterns.body_length(self.pattern, self.n_q, frames) + self.bos + self.eos + self.sep

    def document(self, codes: np.ndarray) -> np.ndarray:
        """codes [n_q, T] (more levels are cut) -> the document's tokens, in this vocab's dtype."""
        body = patterns.to_tokens(codes[:self.n_q], self.pattern, self.codebook_size, self.offset, self.pad_id)
        head = [self.bos_id] if self.bos else []
        tail = ([self.eos_id] if self.eos else []) + ([self.sep_id] if self.sep else [])
        return np.concatenate([np.array(head, np.int64), body, np.array(tail, np.int64)]).astype(self.dtype)

    def codes(self, tokens: np.ndarray, strict: bool = True) -> np.ndarray:
        """A document's tokens -> codes [n_q, T]. Not strict (tokens an LM sampled): leading BOS
        and everything from the first EOS/SEP on are dropped, then see `patterns.to_codes`."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if strict:
            head, tail = int(self.bos), int(self.eos) + int(self.sep)
            ok = len(tokens) >= head + tail and (not self.bos or tokens[0] == self.bos_id) and \
                (not self.eos or tokens[len(tokens) - tail] == self.eos_id) and \
                (not self.sep or tokens[-1] == self.sep_id)
            if not ok:
                raise UserError("tokens are not one whole document (BOS/EOS/SEP missing or misplaced)")
            body = tokens[head:len(tokens) - tail]
        else:
            body = tokens[1:] if len(tokens) and tokens[0] == self.bos_id else tokens
            ends = np.flatnonzero((body == self.eos_id) | ((body == self.sep_id) if self.sep else False))
            body = body[:ends[0]] if len(ends) else body
        return patterns.to_codes(body, self.pattern, self.n_q, self.codebook_size, self.offset, self.pad_id, strict)

    def to_codes(self, tokens: np.ndarray, length: int | None = None, source_sample_rate: int | None = None,
                 strict: bool = True) -> Codes:
        """A document back into a `Codes` that `Codec.decode` and `save_codes` take. Without the
        document's `length` (sampled tokens), the audio is taken to fill its last frame."""
        codes = self.codes(tokens, strict)
        if codes.shape[1] == 0:
            raise UserError("no whole frame in these tokens")
        meta = dict(self.codes_meta)
        hop = int(meta["hop_length"])
        length = codes.shape[1] * hop if length is None else int(length)
        meta.update(length=length, source_sample_rate=int(source_sample_rate or meta["sample_rate"]))
        result = Codes(codes[None], CodesMeta.from_dict(meta, "vocab.json"))
        result.validate("tokens")
        return result

    # ---- vocab.json ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        meta = self.codes_meta
        return {
            "format": FORMAT, "version": VERSION,
            "pattern": self.pattern, "n_q": self.n_q, "codebook_size": self.codebook_size,
            "vocab_offset": self.offset, "vocab_size": self.size, "dtype": self.dtype.name,
            "audio_tokens": [self.offset, self.offset + self.audio_size],
            "token_formula": "offset + level * codebook_size + code",
            "specials": {"pad": self.pad_id, "bos": self.bos_id, "eos": self.eos_id, "sep": self.sep_id},
            "document": {"bos": self.bos, "eos": self.eos, "sep": self.sep},
            "model": {"name": meta.get("model"), "sha256": meta.get("model_sha256")},
            "sample_rate": meta.get("sample_rate"), "frame_rate": meta.get("frame_rate"),
            "hop_length": meta.get("hop_length"),
            "codes_meta": meta,
        }

    @classmethod
    def from_dict(cls, data: dict, name: str = "vocab.json") -> "Vocab":
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise UserError(f"{name}: not an rvqtool vocabulary (format {FORMAT} v{VERSION})")
        try:
            doc = data["document"]
            vocab = cls(data["pattern"], int(data["n_q"]), int(data["codebook_size"]), int(data["vocab_offset"]),
                        bool(doc["bos"]), bool(doc["eos"]), bool(doc["sep"]), dict(data["codes_meta"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{name}: malformed vocabulary ({exc})")
        if vocab.pattern not in patterns.PATTERNS:
            raise UserError(f"{name}: unknown pattern {vocab.pattern!r}")
        return vocab

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()), str(path))
        except FileNotFoundError:
            raise UserError(f"{path}: missing (is this a token directory written by rvq tokenize?)")
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})")
