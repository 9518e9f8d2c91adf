"""`rvq train-codebook`: new RVQ codebooks for a corpus, on a frozen encoder or on .npy features."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rvqtool.cli.app import DEVICE, MODEL, VERBOSE, app, err
from rvqtool.errors import UsageError, UserError


@app.command("train-codebook")
def train_codebook(
    sources: List[str] = typer.Argument(..., metavar="SOURCES", help="Audio files, directories, globs, manifests or - (paths on stdin; README: Inputs), encoded by --model; or .npy feature arrays [N, D]."),
    out: Path = typer.Option(..., "--out", "-o", metavar="PATH", help="Model to write (NAME.safetensors + NAME.json); for .npy features, a codebook .safetensors file."),
    model: str = MODEL,
    name: Optional[str] = typer.Option(None, "--name", help="Name of the new model (default: the file's stem)."),
    n_q: int = typer.Option(8, "--n-q", metavar="N", help="Levels (codebooks) to learn."),
    codebook_size: int = typer.Option(1024, "--codebook-size", metavar="K", help="Codes per level."),
    iterations: int = typer.Option(20, "--iterations", metavar="N", help="Lloyd iterations per level."),
    ema_passes: int = typer.Option(0, "--ema-passes", metavar="N", help="Passes of EMA refinement of all levels together after k-means (0: none)."),
    max_vectors: Optional[int] = typer.Option(None, "--max-vectors", metavar="N", help="Fit on at most N vectors, drawn at random (default: 256 per code)."),
    seed: int = typer.Option(0, "--seed"),
    half_weights: bool = typer.Option(False, "--half-weights", help="Store the model file in float16."),
    threads: int = typer.Option(0, "--threads", metavar="N", help="CPU threads for torch (0: torch's default)."),
    device: str = DEVICE,
    verbose: bool = VERBOSE,
) -> None:
    """Learn residual-VQ codebooks for your corpus, keeping the encoder and decoder: k-means++
    seeds, Lloyd iterations level by level on the residuals, optional EMA refinement. Prints the
    distortion and code usage per level; the model it writes works with every other command.

    \b
    Examples:
      rvq train-codebook corpus/ -o models/fine.safetensors --n-q 12 --codebook-size 2048
      rvq eval heldout/ --model models/fine --n-q 12
      rvq train-codebook feats.npy -o codebooks.safetensors --n-q 4 --codebook-size 256
    """
    import torch

    from rvqtool import codebook_training as ct
    from rvqtool.codec import load_codec

    if threads < 0:
        raise UsageError(f"--threads must be 0 or more, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    options = ct.CodebookOptions(n_q, codebook_size, iterations, ema_passes, max_vectors=max_vectors, seed=seed)
    options.check()
    npy = [s.lower().endswith(".npy") for s in sources]
    if any(npy) and not all(npy):
        raise UserError("give either audio or .npy features, not both")
    if out.suffix not in ("", ".safetensors"):
        raise UserError(f"{out}: the output is a .safetensors file")
    out = out.with_suffix(".safetensors")
    if all(npy):
        arrays = [ct.load_features(Path(s)) for s in sources]
        if len({a.shape[1] for a in arrays}) > 1:
            raise UserError(f"the feature files differ in dimension: {', '.join(str(a.shape[1]) for a in arrays)}")
        features, codec = torch.cat(arrays), None
    else:
        codec = load_codec(model, device)
        features = ct.encoder_features(codec, sources, lambda f: err.print(f"encoded {f}", markup=False) if verbose else None)

    def on_level(level: int, history: list[dict]) -> None:
        if verbose:
            err.print(f"level {level}: distortion {history[0]['distortion']:.4g} -> {history[-1]['distortion']:.4g} "
                      f"in {len(history)} iterations", markup=False)

    codebooks, reports = ct.train_codebooks(features, options, on_level)
    vectors = ct.vectors_used(len(features), options)
    if codec is None:
        ct.save_codebooks(codebooks, out, vectors)
    else:
        ct.save_codebook_model(codec, codebooks, out, name or out.stem, reports, vectors, half_weights)
    typer.echo(f"{'level':>5} {'distortion':>11} {'relative':>9} {'perplexity':>10} {'used':>6} {'reseeded':>8}")
    for r in reports:
        typer.echo(f"{r.level:5d} {r.distortion:11.5g} {r.relative:9.4f} {r.perplexity:10.1f} "
                   f"{100 * r.share_used:5.1f}% {r.reseeded:8d}")
    err.print(f"{'codebooks' if codec is None else 'model'} written to {out} "
              f"({n_q} x {codebook_size} codes, {vectors} vectors)", markup=False)
