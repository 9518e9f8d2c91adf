"""The vocabulary of a token corpus, saved as `vocab.json`: everything needed to map tokens back
to (level, code) and codes back to audio.

Ids, from `offset` (`--vocab-offset`, to sit after an existing text vocabulary) up:
audio tokens [offset, offset + n_q * codebook_size) (token = offset + level * codebook_size + code),
then PAD, BOS, EOS and, when asked for, SEP. `n_q` counts rows of codes, as code files do: one
per level but for a multi-rate model (SNAC), whose vocabulary keeps the rows of its first `levels`
levels in the file's order, each row its own offset (token = offset + row * codebook_size + code),
so the flat pattern is Orpheus's order. A document is [BOS] body [EOS] [SEP]; BOS and EOS
can be left out, SEP (a separator after every file) is off unless asked for.

With an LM preset (`--preset NAME`, rvqtool.tokens.presets) the ids are that LM's instead:
`PresetVocab`, saved under its own format name so that a reader of the plain layout refuses it.
`load_vocab` reads either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rvqtool.errors import UsageError, UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.codes import Codes, CodesMeta
from rvqtool.tokens import patterns
from rvqtool.tokens.levels import rows_of_levels

if TYPE_CHECKING:
    from rvqtool.tokens.presets import Preset

FORMAT = "rvqtool-vocab"
PRESET_FORMAT = "rvqtool-preset-vocab"
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
    codes_meta: dict = field(default_factory=dict)   # the model-wide CodesMeta fields, n_q (and levels) set to ours
    levels: int = 0          # levels that make the n_q rows (0: one row per level, as in CodesMeta)

    @classmethod
    def for_codes(cls, meta: CodesMeta, pattern: str, n_q: int, rows: int | None = None, **specials) -> "Vocab":
        """The vocabulary for codes like `meta`'s, cut to the first `n_q` levels; `rows`: theirs,
        when the caller knows (a codec does), else read off `meta`."""
        template = {k: v for k, v in meta.to_dict().items() if k not in PER_FILE + HINTS}
        if not meta.levels:
            template["n_q"] = n_q
            return cls(pattern, n_q, meta.codebook_size, codes_meta=template, **specials)
        if rows is None:
            rows = meta.n_q if n_q == meta.level_count else len(rows_of_levels(meta, n_q))
        template.update(n_q=rows, levels=n_q)
        return cls(pattern, rows, meta.codebook_size, codes_meta=template, levels=n_q, **specials)

    @property
    def level_count(self) -> int:
        """The levels of codes this vocabulary holds (what --n-q counts)."""
        return self.levels or self.n_q

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
    def file_length(self, file: dict) -> int:
        """Tokens of a planned file's document (a plan's file: frames, text, metadata)."""
        return self.document_length(file["frames"])

    def file_document(self, codes: Codes, file: dict) -> tuple[np.ndarray, dict | None]:
        """A file's codes [channels, rows, T] -> its tokens, and no layout facts (see PresetVocab).
        A multi-rate file of more levels gives the rows of ours (the rest are cut)."""
        rows = codes.codes[0]
        if self.levels and codes.meta.level_count != self.levels:
            rows = rows[rows_of_levels(codes.meta, self.levels)]
        return self.document(rows), None

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
        } | self._multirate_facts()

    def _multirate_facts(self) -> dict:
        """For a multi-rate model only (other vocabularies stay as they were): n_q counts rows."""
        if not self.levels:
            return {}
        return {"levels": self.levels, "rows": self.n_q, "token_formula": "offset + row * codebook_size + code"}

    @classmethod
    def from_dict(cls, data: dict, name: str = "vocab.json") -> "Vocab":
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise UserError(f"{name}: not an rvqtool vocabulary (format {FORMAT} v{VERSION})")
        try:
            doc = data["document"]
            vocab = cls(data["pattern"], int(data["n_q"]), int(data["codebook_size"]), int(data["vocab_offset"]),
                        bool(doc["bos"]), bool(doc["eos"]), bool(doc["sep"]), dict(data["codes_meta"]),
                        int(data.get("levels", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{name}: malformed vocabulary ({exc})")
        if vocab.pattern not in patterns.PATTERNS:
            raise UserError(f"{name}: unknown pattern {vocab.pattern!r}")
        return vocab

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        return cls.from_dict(read_json(path), str(path))


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing (is this a token directory written by rvq tokenize?)")
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})")


@dataclass(frozen=True)
class PresetVocab:
    """The ids of an LM preset: documents are `preset.document(...)`, read back with `preset.codes`.
    `n_q` counts the levels encoded; `codes_meta["n_q"]` the rows code files hold (for SNAC 7
    rows of 3 levels), what the documents' codes are cut to and rebuilt with."""

    preset: "Preset"
    n_q: int
    channels: int
    codes_meta: dict

    @classmethod
    def for_codes(cls, meta: CodesMeta, preset: "Preset", n_q: int | None = None) -> "PresetVocab":
        """The vocabulary for codes like `meta`'s; refuses them (before any work) when the preset's
        LM was not trained on them."""
        n_q = preset.levels if n_q is None else n_q
        preset.check(model=meta.model, n_q=n_q, codebook_size=meta.codebook_size, channels=meta.channels)
        if meta.n_q < preset.rows:      # code files hold rows: levels, or for SNAC a frame's codes
            held = "levels" if preset.rows == preset.levels else "rows"
            raise UserError(f"--preset {preset.name} ({preset.lm}) needs {preset.needs()}; "
                            f"these codes hold {meta.n_q} {held}, not {preset.rows}")
        template = {k: v for k, v in meta.to_dict().items() if k not in PER_FILE + HINTS}
        template["n_q"] = preset.rows
        return cls(preset, n_q, meta.channels, template)

    @property
    def pattern(self) -> str:
        return f"preset:{self.preset.name}"

    @property
    def dtype(self) -> np.dtype:
        return self.preset.dtype

    def file_length(self, file: dict) -> int:
        """Ids of a planned file's document; refused (naming the file) when the preset cannot lay
        it out (no text where a tokenizer needs one, bad alignments)."""
        try:
            return self.preset.document_length(file["frames"], self.channels, file["text"], file["metadata"])
        except UserError as exc:
            raise UserError(f"{file['path']}: {exc}")

    @property
    def level_count(self) -> int:
        return self.n_q

    def file_document(self, codes: Codes, file: dict) -> tuple[np.ndarray, dict]:
        """A file's codes [channels, rows, T] (more rows are cut) -> its ids in the preset's dtype,
        and what a trainer needs beside them (`Document.metadata`: frame width, text frames, ...)."""
        try:
            doc = self.preset.document(codes.codes[:, :self.preset.rows], file["text"], file["metadata"])
        except UserError as exc:
            raise UserError(f"{file['path']}: {exc}")
        tokens = doc.tokens.astype(self.dtype)
        if not np.array_equal(tokens, doc.tokens):      # a layout's ids always fit its dtype; say so if not
            raise UserError(f"{file['path']}: --preset {self.preset.name} made ids outside {self.dtype.name}")
        return tokens, doc.metadata

    def to_codes(self, tokens: np.ndarray, length: int | None = None, source_sample_rate: int | None = None,
                 strict: bool = True) -> Codes:
        """A document (or an LM's sample: `strict` changes nothing, presets read their own ids
        only) back into a `Codes` that `Codec.decode` and `save_codes` take."""
        codes = self.preset.codes(tokens, self.channels)
        meta = dict(self.codes_meta)
        hop = int(meta["hop_length"])
        length = codes.shape[-1] * hop if length is None else int(length)
        meta.update(length=length, source_sample_rate=int(source_sample_rate or meta["sample_rate"]))
        result = Codes(codes, CodesMeta.from_dict(meta, "vocab.json"))
        result.validate("tokens")
        return result

    def to_dict(self) -> dict:
        meta = self.codes_meta
        return {"format": PRESET_FORMAT, "version": VERSION, "preset": self.preset.describe(),
                "n_q": self.n_q, "channels": self.channels, "dtype": self.dtype.name,
                "model": {"name": meta.get("model"), "sha256": meta.get("model_sha256")},
                "sample_rate": meta.get("sample_rate"), "frame_rate": meta.get("frame_rate"),
                "hop_length": meta.get("hop_length"), "codes_meta": meta}

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, name: str = "vocab.json", tokenizer=None) -> "PresetVocab":
        """`tokenizer` (a path or a loaded one): the corpus's own, for presets whose ids map back
        through it (neutts sequences); refused when it is not the one the corpus was made with."""
        from rvqtool.tokens.presets import PRESETS, make_preset
        from rvqtool.tokens.presets.text import fingerprint

        if data.get("format") != PRESET_FORMAT or data.get("version") != VERSION:
            raise UserError(f"{name}: not an rvqtool preset vocabulary (format {PRESET_FORMAT} v{VERSION})")
        try:
            facts = dict(data["preset"])
            preset_name, n_q, channels, meta = str(facts["preset"]), int(data["n_q"]), int(data["channels"]), \
                dict(data["codes_meta"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{name}: malformed vocabulary ({exc})")
        if preset_name not in PRESETS:
            raise UserError(f"{name}: preset {preset_name!r} is not one this rvqtool knows ({', '.join(PRESETS)})")
        made_with = facts.get("tokenizer_sha256")
        preset = make_preset(preset_name, tokenizer)
        if preset.tokenizer is not None and fingerprint(preset.tokenizer) != made_with:
            raise UserError(f"--tokenizer is not the tokenizer {name} was made with "
                            f"(its sha256 {made_with or 'none: made without --tokenizer'})")
        if made_with and preset.tokenizer is None and preset.ids_need_tokenizer:
            raise UserError(f"{name}: --preset {preset_name} sequences map back to codes through their "
                            "tokenizer: pass --tokenizer tokenizer.json (the one they were made with)")
        return cls(preset, n_q, channels, meta)


def load_vocab(path: Path, tokenizer=None) -> Vocab | PresetVocab:
    """vocab.json of either kind (`tokenizer`: see `PresetVocab.from_dict`)."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("format") == PRESET_FORMAT:
        return PresetVocab.from_dict(data, str(path), tokenizer)
    if tokenizer is not None:
        raise UsageError(f"--tokenizer applies to corpora made with --preset; {path} was not")
    return Vocab.from_dict(data, str(path))
