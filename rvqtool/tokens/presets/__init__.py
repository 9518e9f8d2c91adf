"""Token presets: the exact id layouts audio LMs are trained on (`rvq tokenize --preset NAME`),
so token shards feed their fine-tuning scripts as they are.

    preset = make_preset("orpheus", tokenizer="tokenizer.json")    # or tokenizer=None
    preset.check(model=meta.model, n_q=n_q, codebook_size=meta.codebook_size, channels=meta.channels)
    doc = preset.document(codes, text, metadata)    # Document(tokens int64 [n], metadata)
    preset.codes(doc.tokens, channels)              # codes int64 [channels, rows, T] again

Each preset's module says where its layout was read (repository, commit, file): orpheus (SNAC
24 kHz), csm (Mimi, 32 levels), moshi (Mimi, 8), llasa (XCodec2), neutts (NeuCodec).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rvqtool.errors import UsageError
from rvqtool.tokens.presets.base import Document, Preset, family_matches
from rvqtool.tokens.presets.csm import Csm
from rvqtool.tokens.presets.llasa import Llasa
from rvqtool.tokens.presets.moshi import Moshi
from rvqtool.tokens.presets.neutts import NeuTTS
from rvqtool.tokens.presets.orpheus import Orpheus
from rvqtool.tokens.presets.text import load_tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PRESETS: dict[str, type[Preset]] = {p.name: p for p in (Orpheus, Csm, Moshi, Llasa, NeuTTS)}

__all__ = ["PRESETS", "Document", "Preset", "family_matches", "load_tokenizer", "make_preset"]


def make_preset(name: str, tokenizer: "Tokenizer | str | Path | None" = None) -> Preset:
    """The preset `name`, with the LM's tokenizer (a loaded one, or a tokenizer.json path) for
    whole training sequences, or without for audio segments. A tokenizer that is not the LM's
    (its markers at other ids, its speech tokens missing) is refused here, before any encoding."""
    if name not in PRESETS:
        raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, got {name}")
    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    return PRESETS[name](tokenizer)
