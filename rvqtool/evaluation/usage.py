"""How a codebook is used: per level, code counts, perplexity and the share of codes that occur.

Perplexity is exp(entropy) of the code distribution: the number of equally likely codes that
would carry as much information. A level with perplexity far below its codebook size wastes bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CodeUsage:
    counts: np.ndarray   # [levels, codebook_size] occurrences

    @classmethod
    def empty(cls, levels: int, codebook_size: int) -> "CodeUsage":
        return cls(np.zeros((levels, codebook_size), dtype=np.int64))

    def add(self, codes: np.ndarray) -> None:
        """Count codes [..., levels, T] (any leading channel axes)."""
        codes = np.asarray(codes).reshape(-1, *np.shape(codes)[-2:])
        levels = min(codes.shape[1], len(self.counts))
        for level in range(levels):
            self.counts[level] += np.bincount(codes[:, level].ravel(), minlength=self.counts.shape[1])

    def perplexity(self) -> list[float]:
        out = []
        for row in self.counts:
            p = row[row > 0] / max(row.sum(), 1)
            out.append(float(np.exp(-(p * np.log(p)).sum())) if len(p) else 0.0)
        return out

    def share_used(self) -> list[float]:
        return [float((row > 0).mean()) for row in self.counts]

    def entropy_bits(self) -> list[float]:
        return [float(np.log2(max(p, 1.0))) for p in self.perplexity()]

    def summary(self) -> list[dict]:
        return [{"level": level + 1, "perplexity": p, "share_used": s, "entropy_bits": e, "codes": int(c.sum())}
                for level, (p, s, e, c) in enumerate(zip(self.perplexity(), self.share_used(),
                                                         self.entropy_bits(), self.counts))]
