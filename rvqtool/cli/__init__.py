"""`rvq`: the command line, a thin layer over the Python API.

Quiet by default (-v for more), progress bars only on a terminal, '-' for stdin/stdout.
Exit codes: 0 ok, 1 bad input (one line on stderr, never a traceback), 2 usage.
Each command group lives in its own module; importing it registers its commands on `app`.
"""
from rvqtool.cli.app import app, main
from rvqtool.cli import codebook_command, codec_commands, convert_command, eval_command, tokens_commands, train_command  # noqa: F401  (registers the commands)

__all__ = ["app", "main"]
