"""The exceptions the CLI turns into one line on stderr: bad input (exit 1), usage (exit 2)."""


class UserError(Exception):
    """Bad input or environment the user can fix: said in one line, never a traceback."""


class UsageError(UserError):
    """An option value or combination that is wrong whatever the inputs hold (`--format xyz`,
    `--n-q 9` for an 8-level model): exit code 2, as for options the parser itself refuses.
    A UserError still, so Python callers catch both alike."""
