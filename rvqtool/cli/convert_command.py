"""`rvq convert`: a foreign checkpoint (EnCodec, DAC) -> an rvqtool model (safetensors + JSON)."""
from __future__ import annotations

import typer

from rvqtool.cli.app import app, err


@app.command()
def convert(
    source: str = typer.Argument(..., metavar="KIND:CHECKPOINT", help="e.g. encodec_24khz:encodec_24khz-d7cc33bc.th"),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT", help="Writes OUT.safetensors and OUT.json."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say what was written."),
) -> None:
    """Convert a reference checkpoint into rvqtool's own model files (no pickle needed to load them).

    \b
    Examples:
      rvq convert encodec_24khz:encodec_24khz-d7cc33bc.th -o models/encodec_24khz
      rvq encode talk.wav -o talk.npy --model models/encodec_24khz --bandwidth 6
    """
    from rvqtool.pretrained.convert import convert as run

    path = run(source, output)
    if verbose:
        err.print(f"{source} -> {path} (+ {path.with_suffix('.json').name})", markup=False)
