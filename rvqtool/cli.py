"""`rvq`: the command line, a thin layer over the Python API.

Quiet by default (-v for more), progress bars only on a terminal, '-' for stdin/stdout.
Exit codes: 0 ok, 1 bad input (one line on stderr, never a traceback), 2 usage.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rvqtool.errors import UserError

try:  # recent typer carries its own copy of click (typer._click) and no longer installs click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer is built on click itself
    from click import ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Neural audio codec: turn audio into discrete codes and back.\n\n"
                       "Example: rvq encode speech.wav -o speech.npy && rvq decode speech.npy -o out.wav")
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per message, however long

MODEL = typer.Option("default", "--model", "-m", metavar="NAME|PATH", help="Shipped model name (default) or path to a .safetensors model.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Say what is done, file by file.")


def _progress(total: int, verbose: bool) -> Progress | None:
    if total < 2 or not sys.stderr.isatty():
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=not verbose)


def _batch(jobs, work, overwrite: bool, verbose: bool, what: str) -> None:
    from rvqtool import batch

    progress = _progress(len(jobs), verbose)
    task = progress.add_task(what, total=len(jobs)) if progress else None

    def done(job: batch.Job) -> bool:
        return job.resumable and not overwrite and Path(job.target).exists()

    def failed(job: batch.Job, message: str) -> None:
        err.print(f"error: {message}", markup=False)

    def step(job: batch.Job) -> None:
        if progress:
            progress.advance(task)
        if verbose:
            err.print(f"{job.source} -> {job.target}", markup=False)

    if progress:
        progress.start()
    try:
        outcome = batch.run(jobs, work, done, failed, step)
    finally:
        if progress:
            progress.stop()
    if verbose or (outcome.failed and len(jobs) > 1):
        err.print(f"{what}: {outcome.done} done, {outcome.skipped} already done, {len(outcome.failed)} failed",
                  markup=False)
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
def encode(
    inputs: List[str] = typer.Argument(..., metavar="AUDIO", help="Audio files or directories (any format soundfile reads), or - for stdin."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT", help="Code file (.npy or .rvq), a directory (mirrors the inputs), or - (packed codes on stdout)."),
    model: str = MODEL,
    n_q: Optional[int] = typer.Option(None, "--n-q", help="Quantizer levels to keep (default: all)."),
    bandwidth: Optional[float] = typer.Option(None, "--bandwidth", "-b", help="Target kbps; picks the most levels that fit."),
    channels: str = typer.Option("mono", "--channels", help="mono: downmix; split: encode each channel on its own."),
    codes_format: str = typer.Option("npy", "--format", help="For directory outputs: npy (+ .npy.json) or rvq (packed)."),
    device: str = DEVICE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist (batch runs skip them)."),
    verbose: bool = VERBOSE,
) -> None:
    """Encode audio into codes.

    \b
    Examples:
      rvq encode talk.flac -o talk.npy --bandwidth 3
      rvq encode corpus/ -o codes/            # mirrors the tree; re-runs skip finished files
      find corpus -name '*.ogg' | xargs rvq encode -o codes/
      cat talk.wav | rvq encode - -o - > talk.rvq
    """
    from rvqtool import batch, load_codec, save_codes
    from rvqtool.io.audio import AUDIO_SUFFIXES

    if codes_format not in ("npy", "rvq"):
        raise UserError(f"--format must be npy or rvq, got {codes_format}")
    codec = load_codec(model, device)
    levels = codec.n_q(n_q, bandwidth)
    jobs = batch.plan(inputs, output, AUDIO_SUFFIXES, "." + codes_format)
    for job in jobs:
        if job.target != "-" and Path(job.target).suffix not in (".npy", ".rvq"):
            raise UserError(f"{job.target}: code files end in .npy or .rvq")

    def work(job: batch.Job) -> None:
        save_codes(codec.encode_file(job.source, levels, channels), job.target)

    _batch(jobs, work, overwrite, verbose, "encode")


@app.command()
def decode(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help="Code files (.npy with .npy.json, or .rvq) or directories, or - for stdin."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT", help="Audio file (.wav, .flac, .ogg), a directory, or - (WAV on stdout)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to decode with (default: the one named in the codes)."),
    n_q: Optional[int] = typer.Option(None, "--n-q", help="Decode only the first N levels."),
    device: str = DEVICE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist (batch runs skip them)."),
    verbose: bool = VERBOSE,
) -> None:
    """Decode codes back into audio; the model is found from the codes' metadata.

    \b
    Examples:
      rvq decode talk.npy -o talk.wav
      rvq decode talk.npy -o talk_1.5kbps.wav --n-q 2
      rvq decode codes/ -o audio/
    """
    from rvqtool import batch, load_codes
    from rvqtool.io.audio import write_audio

    jobs = batch.plan(inputs, output, frozenset({".npy", ".rvq"}), ".wav")
    codecs: dict[str, object] = {}

    def work(job: batch.Job) -> None:
        codes = load_codes(job.source)
        codec = _codec_for(codes, model, device, codecs)
        codec.check(codes, job.source)
        if job.target == "-":
            write_audio("-", codec.decode(codes, n_q), codec.sample_rate)
        else:
            codec.decode_to_file(codes, Path(job.target), n_q)

    _batch(jobs, work, overwrite, verbose, "decode")


def _codec_for(codes, model: Optional[str], device: str, cache: dict):
    """The model named by --model, else the shipped model or the file the codes record."""
    from rvqtool.codec import SHIPPED, load_codec

    meta = codes.meta
    if model is None:
        if meta.model in SHIPPED:
            model = meta.model
        elif meta.model_path and Path(meta.model_path).exists():
            model = meta.model_path
        else:
            raise UserError(f"codes were made by model '{meta.model}', which is not shipped and not at "
                            f"{meta.model_path or 'a recorded path'}: pass --model PATH")
    if model not in cache:
        cache[model] = load_codec(model, device)
    return cache[model]


@app.command()
def info(
    path: str = typer.Argument(..., metavar="FILE", help="An audio file, a code file (.npy/.rvq), or a model (.safetensors or a shipped name)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Describe an audio file, a code file or a model.

    \b
    Examples:
      rvq info talk.npy
      rvq info default --json
    """
    from rvqtool.describe import describe

    facts = describe(path)
    if as_json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")


@app.command()
def train(
    sources: List[Path] = typer.Argument(..., metavar="SOURCES", help="Directories of audio, manifests (.txt/.csv with a path column) or files."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, train_log.jsonl and NAME.safetensors."),
    name: str = typer.Option("model", "--name", help="Name of the model file written into --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    steps: int = typer.Option(10000, "--steps", help="Train until this many steps in total."),
    batch_size: int = typer.Option(8, "--batch-size"),
    crop_seconds: float = typer.Option(0.8, "--crop-seconds", help="Length of the random training crops."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate (AdamW), after warm-up; decays exponentially."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every"),
    quantizer_warmup: int = typer.Option(300, "--quantizer-warmup", help="Steps trained unquantised before k-means fits the codebooks."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: all cores)."),
    half_weights: bool = typer.Option(False, "--half-weights", help="Store the model file in float16 (half the size)."),
    device: str = DEVICE,
    sample_rate: int = typer.Option(24000, "--sample-rate"),
    ratios: str = typer.Option("8,5,4,2", "--ratios", help="Up-sampling ratios; their product is the hop length."),
    encoder_filters: int = typer.Option(16, "--encoder-filters"),
    decoder_filters: int = typer.Option(32, "--decoder-filters"),
    dimension: int = typer.Option(128, "--dimension", help="Latent (codebook vector) dimension."),
    n_quantizers: int = typer.Option(8, "--n-quantizers"),
    codebook_size: int = typer.Option(1024, "--codebook-size"),
    lstm_layers: int = typer.Option(0, "--lstm-layers", help="EnCodec-style LSTM layers (0: none; >0 makes chunked codes inexact)."),
    causal: bool = typer.Option(False, "--causal", help="Causal convolutions (streamable)."),
    quantizer_dropout: float = typer.Option(0.5, "--quantizer-dropout", help="Share of steps trained with a random number of levels."),
    verbose: bool = VERBOSE,
) -> None:
    """Train a codec on a corpus (CPU or CUDA); resumable.

    \b
    Examples:
      rvq train corpus/ -o runs/speech --steps 20000
      rvq train corpus/ -o runs/speech --steps 40000 --resume
      rvq encode x.wav -o x.npy --model runs/speech/model
    """
    from rvqtool.codec import resolve_device
    from rvqtool.config import CodecConfig
    from rvqtool.train.trainer import TrainOptions, train as run_training

    try:
        ratio_list = tuple(int(r) for r in ratios.split(","))
    except ValueError:
        raise UserError(f"--ratios must be comma-separated integers, got {ratios!r}")
    config = CodecConfig(sample_rate=sample_rate, ratios=ratio_list, encoder_filters=encoder_filters,
                         decoder_filters=decoder_filters, dimension=dimension, n_quantizers=n_quantizers,
                         codebook_size=codebook_size, lstm_layers=lstm_layers, causal=causal,
                         quantizer_dropout=quantizer_dropout)
    options = TrainOptions(steps=steps, batch_size=batch_size, crop_seconds=crop_seconds, learning_rate=lr,
                           checkpoint_every=checkpoint_every, quantizer_warmup=quantizer_warmup, seed=seed, threads=threads,
                           half_weights=half_weights)
    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                        TimeRemainingColumn(), console=err) if sys.stderr.isatty() else None
    task = progress.add_task("train", total=steps, status="") if progress else None

    def report(step: int, total: int, record: dict) -> None:
        status = f"loss {record['loss']:.3f} mel {record['mel']:.3f}"
        if progress:
            progress.update(task, completed=step, status=status)
        elif verbose:
            err.print(f"step {step}/{total} {status}", markup=False)

    if progress:
        progress.start()
    try:
        path = run_training(sources, out, config, options, str(resolve_device(device)), resume, name, report)
    finally:
        if progress:
            progress.stop()
    err.print(f"model written to {path}", markup=False)


def main() -> None:
    """Entry point: runs the app and turns every expected failure into one line on stderr."""
    verbose = "-v" in sys.argv or "--verbose" in sys.argv
    try:
        # without standalone mode, an Exit raised by a command (e.g. a batch with failures) comes
        # back as the return value rather than as an exception
        code = app(standalone_mode=False)
    except UserError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug or an environment fault: still one line unless -v
        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if verbose:
            raise
        err.print(f"error: unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
