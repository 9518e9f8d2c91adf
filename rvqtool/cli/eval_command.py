"""`rvq eval`: how good are the codes? Quality, bitrate, code usage and speed, optionally beside Opus."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rvqtool.cli.app import DEVICE, MODEL, VERBOSE, ProgressBar, app, err
from rvqtool.errors import UsageError, UserError


@app.command("eval")
def evaluate_command(
    inputs: List[str] = typer.Argument(..., metavar="AUDIO", help="Audio files, directories (category: the first sub-directory), globs, manifests (category column) or - (paths on stdin); README: Inputs."),
    model: str = MODEL,
    n_q: Optional[List[int]] = typer.Option(None, "--n-q", metavar="N", help="Levels to evaluate; repeat for several (default: all levels)."),
    metrics: str = typer.Option("all", "--metrics", metavar="LIST", help="Comma list of si_sdr, mel, stft, pesq, stoi, visqol; 'all' = the core three plus those installed."),
    compare: Optional[str] = typer.Option(None, "--compare", metavar="opus", help="'opus': also run Opus (opusenc/opusdec) at the same bitrates."),
    visqol_mode: str = typer.Option("auto", "--visqol-mode", metavar="MODE", help="ViSQOL's mode: speech (16 kHz), audio (48 kHz), or auto: speech for files of category 'speech', audio otherwise."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help="Write every number to a .json or .csv file."),
    plots: Optional[Path] = typer.Option(None, "--plots", metavar="DIR", help="Directory for PNGs: spectrograms per file, code usage per level."),
    means_only: bool = typer.Option(False, "--means-only", help="Print only the means, not a row per file."),
    threads: int = typer.Option(0, "--threads", metavar="N", help="CPU threads for torch (0: torch's default); speeds depend on it."),
    device: str = DEVICE,
    verbose: bool = VERBOSE,
) -> None:
    """Encode and decode every file and score the reconstruction: SI-SDR, mel and STFT distance,
    PESQ / STOI / ViSQOL (with the eval extra), bitrate, code usage per level, × real time.
    ViSQOL scores speech in its speech mode and everything else in audio mode (--visqol-mode);
    the table and JSON name the mode of each score.

    \b
    Examples:
      rvq eval clips/ --n-q 8 --n-q 2 --compare opus --out results.json
      rvq eval speech.wav --metrics mel,pesq --plots plots/
    """
    import torch

    from rvqtool import load_codec
    from rvqtool.evaluation import EvalOptions, Progress, evaluate, resolve
    from rvqtool.evaluation.report import table, usage_lines, write
    from rvqtool.evaluation.scores import check_visqol_mode, select

    if compare not in (None, "opus"):
        raise UsageError(f"--compare: only 'opus' is known, got {compare!r}")
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        raise UserError(f"{out}: --out takes a .json or .csv file")
    check_visqol_mode(visqol_mode)
    if threads < 0:
        raise UsageError(f"--threads must be 0 or more, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    chosen = select(metrics)
    items = resolve(inputs)
    codec = load_codec(model, device)
    levels = tuple(dict.fromkeys(n_q)) if n_q else (codec.config.n_quantizers,)
    bar = ProgressBar("eval", len(items), verbose)

    def done(item) -> None:
        bar.advance()
        if verbose:
            err.print(f"{item.name}: done", markup=False)

    def failed(item, message: str) -> None:
        err.print(f"error: {message}", markup=False)

    progress = Progress(done, failed)
    with bar:
        result = evaluate(codec, items, EvalOptions(levels, chosen, compare == "opus", plots, visqol_mode), progress)
    if result["files"]:
        if not means_only:
            typer.echo(table(result["files"], chosen, "file") + "\n")
        typer.echo(table(result["means"], chosen, "category"))
        typer.echo(usage_lines(result["code_usage"]))
    if out is not None:
        write(out, result)
    if progress.failures:
        if len(items) > 1:
            err.print(f"eval: {len(items) - len(progress.failures)} done, {len(progress.failures)} failed", markup=False)
        raise typer.Exit(1)
