"""The text side of a preset: a local Hugging Face `tokenizer.json`, read with the `tokenizers`
package (the optional extra `rvqtool[tokenizer]`). Nothing is downloaded: the LMs' own
tokenizers are files their users already have next to the checkpoint.

Presets encode text with `add_special_tokens=False` and add each LM's framing ids themselves, as
its data script does, so the result does not depend on the post-processor a tokenizer.json
happens to carry."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from rvqtool.errors import UserError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def load_tokenizer(path: str | Path) -> "Tokenizer":
    """A tokenizer.json (or a folder holding one) as a `tokenizers.Tokenizer`."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("--tokenizer needs the tokenizers package: pip install 'rvqtool[tokenizer]'")
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{path}: no such file (--tokenizer takes a Hugging Face tokenizer.json or its folder)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:   # tokenizers raises its own Exception subclass for any malformed file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a Hugging Face tokenizer.json ({reason})")


def fingerprint(tokenizer: "Tokenizer") -> str:
    """SHA-256 of the tokenizer's serialised form: which tokenizer made a corpus's text ids."""
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def encode(tokenizer: "Tokenizer", text: str) -> list[int]:
    """`text`'s ids, without the tokenizer's own BOS/EOS (presets add the LM's framing)."""
    return tokenizer.encode(text, add_special_tokens=False).ids


def token_id(tokenizer: "Tokenizer", token: str, preset: str, expected: int | None = None) -> int:
    """The id of `token`, which the preset's LM has; `expected`: the id the LM was trained with."""
    found = tokenizer.token_to_id(token)
    if found is None:
        raise UserError(f"the tokenizer has no {token} token: --preset {preset} needs the LM's own tokenizer.json")
    if expected is not None and found != expected:
        raise UserError(f"the tokenizer's {token} is id {found}, {preset} was trained with {expected}: "
                        f"not {preset}'s tokenizer.json")
    return found
