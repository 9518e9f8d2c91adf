"""The one exception type the CLI turns into a one-line message and exit code 1."""


class UserError(Exception):
    """Bad input or environment the user can fix: said in one line, never a traceback."""
