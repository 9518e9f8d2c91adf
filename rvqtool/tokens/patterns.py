"""Token layouts: codes [n_q, T] <-> the 1-D token body of one document.

Every audio token says its level: token = level * codebook_size + code (before the vocabulary
offset), so a trainer can read (level, code) back from any token.

* `flat`: frame-major interleave, (t0 l0, t0 l1, ..., t1 l0, ...): n_q * T tokens.
* `delay`: MusicGen's delay pattern: level k is shifted right by k frames, so each step holds
  (l0 of frame s, l1 of frame s-1, ...); slots before a level's start or after its end hold PAD.
  n_q * (T + n_q - 1) tokens, step-major.
* `level-major`: all of level 0, then all of level 1, ...: n_q * T tokens.
* `coarse`: `flat` over the first n levels only (`--n-q`); a separate name so the vocabulary
  records that finer levels were dropped on purpose.
"""
from __future__ import annotations

import numpy as np

from rvqtool.errors import UserError

PATTERNS = ("flat", "delay", "level-major", "coarse")


def body_length(pattern: str, n_q: int, frames: int) -> int:
    """Tokens in a document body of `frames` frames (specials not counted)."""
    return n_q * (frames + n_q - 1) if pattern == "delay" else n_q * frames


def frames_of(pattern: str, n_q: int, length: int) -> int:
    """Inverse of `body_length` for a well-formed body."""
    steps = length // n_q
    return steps - (n_q - 1) if pattern == "delay" else steps


def to_tokens(codes: np.ndarray, pattern: str, codebook_size: int, offset: int, pad: int) -> np.ndarray:
    """codes int [n_q, T] -> int64 body tokens."""
    n_q, frames = codes.shape
    levels = np.arange(n_q, dtype=np.int64)[:, None] * codebook_size + offset
    tokens = codes.astype(np.int64) + levels                      # [n_q, T]
    if pattern in ("flat", "coarse"):
        return tokens.T.reshape(-1)
    if pattern == "level-major":
        return tokens.reshape(-1)
    if pattern == "delay":
        steps = frames + n_q - 1
        grid = np.full((n_q, steps), pad, dtype=np.int64)
        for k in range(n_q):
            grid[k, k:k + frames] = tokens[k]
        return grid.T.reshape(-1)
    raise UserError(f"unknown pattern {pattern!r} (expected one of {', '.join(PATTERNS)})")


def to_codes(body: np.ndarray, pattern: str, n_q: int, codebook_size: int, offset: int, pad: int,
             strict: bool = True) -> np.ndarray:
    """Body tokens -> codes int64 [n_q, T].

    strict: the body must be exactly what `to_tokens` makes (checked: length, each token's level,
    PAD exactly where the delay pattern puts it). Not strict (for tokens an LM sampled): the body
    is cut to whole steps, each slot's level comes from its position and its code is the token's
    value modulo the codebook size; a special or foreign token where a code belongs reads as code 0."""
    body = np.asarray(body, dtype=np.int64).reshape(-1)
    if strict and (len(body) % n_q or frames_of(pattern, n_q, len(body)) < 1):
        raise UserError(f"{len(body)} tokens is not a whole {pattern} document of {n_q} levels")
    steps = len(body) // n_q
    if pattern == "level-major":
        grid = body[:n_q * steps].reshape(n_q, steps)
    else:
        grid = body[:n_q * steps].reshape(steps, n_q).T            # [n_q, steps]
    if pattern == "delay":
        frames = max(0, steps - (n_q - 1))
        if strict:
            mask = np.ones_like(grid, dtype=bool)
            for k in range(n_q):
                mask[k, k:k + frames] = False
            if (grid[mask] != pad).any():
                raise UserError("delay-pattern tokens hold codes where PAD belongs")
        grid = np.stack([grid[k, k:k + frames] for k in range(n_q)]) if frames else np.zeros((n_q, 0), np.int64)
    if not strict:
        audio = (grid >= offset) & (grid < offset + n_q * codebook_size)
        return np.where(audio, (grid - offset) % codebook_size, 0)
    codes = grid - (np.arange(n_q, dtype=np.int64)[:, None] * codebook_size + offset)
    if ((codes < 0) | (codes >= codebook_size)).any():
        raise UserError("tokens do not match their level's range (not made with this vocabulary and pattern?)")
    return codes
