"""Which rows of a code file hold its first levels (`--n-q` counts levels, as on encode/decode).

One row per level but for a multi-rate model (SNAC): its files hold rows at the coarse rate in
depth-first order (rvqtool/model/snac.py), so the rows of fewer levels are not a prefix (24 kHz:
1/2/3 levels -> rows [0], [0, 1, 4], all 7). A token stream keeps those rows in the file's order.
"""
from __future__ import annotations

from rvqtool.errors import UserError
from rvqtool.io.codes import CodesMeta
from rvqtool.model.snac import rows_for_levels


def level_multiples(meta: CodesMeta) -> tuple[int, ...]:
    """Codes per coarse frame of each level of codes like `meta`'s. Code files record rows and
    levels, not these: every published SNAC model doubles its codes from level to level (24 kHz
    1, 2, 4; 32/44 kHz 1, 2, 4, 8), so L levels hold 2^L - 1 rows; codes of other row counts
    (models of other strides) are refused rather than cut at a guess."""
    levels, rows = meta.level_count, meta.n_q
    if not meta.levels:
        return (1,) * levels
    if rows != 2 ** levels - 1:
        raise UserError(f"model '{meta.model}' codes hold {rows} rows of {levels} levels, not the {2 ** levels - 1} "
                        f"of SNAC's published models: their file does not say which rows each level has; "
                        f"pass --n-q {levels} (all of them), or tokenize the audio")
    return tuple(2 ** level for level in range(levels))


def rows_of_levels(meta: CodesMeta, levels: int) -> list[int]:
    """Indices of the rows of the first `levels` levels among the rows of codes like `meta`'s."""
    if not meta.levels:
        return list(range(levels))
    return rows_for_levels(levels, level_multiples(meta))
