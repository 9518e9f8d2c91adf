"""The exceptions the CLI turns into one line on stderr: bad input (exit 1), usage (exit 2); and
the failure of one file in a batch, reported beside the files that went well."""
from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """Bad input or environment the user can fix: said in one line, never a traceback."""


class UsageError(UserError):
    """An option value or combination that is wrong whatever the inputs hold (`--format xyz`,
    `--n-q 9` for an 8-level model): exit code 2, as for options the parser itself refuses.
    A UserError still, so Python callers catch both alike."""


@dataclass(frozen=True)
class Failure:
    """One file a batch could not do, and why (one line, naming the file): the batch reports it and
    goes on. A value, not an exception, so it travels back from worker processes among results."""

    path: str
    reason: str

    @classmethod
    def of(cls, path: str, exc: BaseException) -> "Failure":
        """A user error says what is wrong in its own words; anything else is named as unexpected."""
        reason = str(exc) if isinstance(exc, UserError) else f"{path}: unexpected {type(exc).__name__}: {exc}"
        return cls(path, reason)
