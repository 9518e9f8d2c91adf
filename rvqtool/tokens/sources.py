"""The documents of a token corpus: the files the inputs name (`rvqtool.io.inputs`: directories,
globs, manifests whose extra columns travel with each file, '-'), each with a unique, one-line id.

An id is a name, never a path that something is written to (wds members are named by shard and
position), so '../x' or 'a/b' are fine; line breaks and other control characters are refused."""
from __future__ import annotations

import re
from typing import TextIO

from rvqtool.errors import UserError
from rvqtool.io.inputs import Input, resolve

Source = Input   # the name the token pipeline knows a document's file by
UNSAFE_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")   # line breaks, tabs, other control characters


def collect(inputs: list[str], suffixes: frozenset[str], stdin: TextIO | None = None, what: str = "") -> list[Source]:
    """All sources, in input order (directories sorted); refuses duplicate ids and ids that are not one line."""
    found = resolve(inputs, suffixes, what, stdin)
    seen: dict[str, str] = {}
    for src in found:
        if UNSAFE_ID.search(src.id):
            raise UserError(f"the id {src.id!r} of {src.path!r} holds a line break or another control character: "
                            "ids must be one line of text (give it another in the manifest's id column)")
        if src.id in seen:
            raise UserError(f"two inputs share the id '{src.id}' ({seen[src.id]} and {src.path}): "
                            "list them in a manifest with an id column")
        seen[src.id] = src.path
    return found
