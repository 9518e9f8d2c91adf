"""`rvq tokenize`, `rvq export`, `rvq detokenize`: token corpora for language models."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

import typer

from rvqtool.cli.app import DEVICE, MODEL, VERBOSE, ProgressBar, app, err
from rvqtool.errors import Failure, UsageError, UserError

if TYPE_CHECKING:
    from rvqtool.tokens.api import RunOptions
    from rvqtool.tokens.run import Summary

FORMAT = typer.Option("bin", "--format", "-f", help="bin (memmap + index), parquet, jsonl or wds (webdataset tar).")
PATTERN = typer.Option("flat", "--pattern", "-p", help="flat, delay (MusicGen), level-major or coarse (first --n-q levels).")
N_Q = typer.Option(None, "--n-q", help="Levels to keep (default: all).")
OFFSET = typer.Option(0, "--vocab-offset", help="First audio token id (to follow an existing text vocabulary).")
BOS = typer.Option(True, "--bos/--no-bos", help="Start every document with BOS.")
EOS = typer.Option(True, "--eos/--no-eos", help="End every document with EOS.")
SEP = typer.Option(False, "--sep", help="Add a SEP token after every document.")
SHARD_SIZE = typer.Option("100M", "--shard-size", help="Target tokens per shard: 100M, 250k, 5000 ...")
INDEX = typer.Option("npy", "--index", help="bin only: npy (NAME.idx.npy offsets) or megatron (NAME.idx, Megatron's layout).")
WORKERS = typer.Option(1, "--workers", "-j", help="Worker processes (each loads the model).")
THREADS = typer.Option(0, "--threads", help="torch threads per worker (0: cores / workers).")
BATCH = typer.Option(0, "--batch-windows", help="Encoder windows per call, bucketed by length (0: 16 on CUDA, 1 on CPU); codes do not change.")
SHARD_INDEX = typer.Option(None, "--shard-index", help="Do only shards i, i+N, ... (with --num-shards N; a Slurm array).")
NUM_SHARDS = typer.Option(None, "--num-shards", help="How many parts the job is split into.")
ENGINE = typer.Option("local", "--engine", help="local (processes on this machine) or ray (pip install 'ray[data]').")
ADDRESS = typer.Option(None, "--address", help="--engine ray: the cluster to join (default: start a local Ray).")
PRESET = typer.Option(None, "--preset", metavar="NAME", help="An LM's own id layout instead of --pattern/--vocab-offset/--bos/--eos/--sep: orpheus (SNAC 24 kHz), csm (Mimi 32 levels), moshi (Mimi 8), llasa (XCodec2), neutts (NeuCodec); README: Fine-tuning an LM.")
TOKENIZER = typer.Option(None, "--tokenizer", metavar="TOKENIZER_JSON", help="With --preset: the LM's tokenizer.json (or its folder; pip install 'rvqtool[tokenizer]'), for whole training sequences of a manifest's text + audio; without it, audio segments with the text as metadata.")


@app.command()
def tokenize(
    ctx: typer.Context,
    sources: List[str] = typer.Argument(..., metavar="SOURCES", help="Audio files, directories, globs, manifests or - (paths on stdin); README: Inputs."),
    output: Path = typer.Option(..., "--output", "-o", metavar="OUT_DIR", help="Directory for the shards, vocab.json and manifest."),
    fmt: str = FORMAT, pattern: str = PATTERN, n_q: Optional[int] = N_Q, vocab_offset: int = OFFSET,
    bos: bool = BOS, eos: bool = EOS, sep: bool = SEP, shard_size: str = SHARD_SIZE, index: str = INDEX,
    workers: int = WORKERS, threads: int = THREADS, shard_index: Optional[int] = SHARD_INDEX,
    num_shards: Optional[int] = NUM_SHARDS, engine: str = ENGINE, address: Optional[str] = ADDRESS,
    batch_windows: int = BATCH, preset: Optional[str] = PRESET, tokenizer: Optional[Path] = TOKENIZER,
    model: str = MODEL, device: str = DEVICE, verbose: bool = VERBOSE,
) -> None:
    """Encode audio straight into token shards for language-model training; resumable.

    \b
    Examples:
      rvq tokenize corpus/ -o shards/ --format bin --pattern delay --workers 2
      find corpus -name '*.flac' | rvq tokenize - -o shards/ --format parquet
      rvq tokenize train.jsonl -o shards/ --vocab-offset 50257 --sep
      rvq tokenize train.jsonl -o orpheus/ --preset orpheus --tokenizer tokenizer.json --model snac_24khz:DIR
    A rerun of the same command finishes a killed job; bad files go to OUT_DIR/failures.jsonl.
    """
    from rvqtool.tokens import api

    options = _options(ctx, fmt, pattern, n_q, vocab_offset, bos, eos, sep, shard_size, index, preset, tokenizer)
    run = api.RunOptions(workers, threads, batch_windows, shard_index, num_shards, engine, address)
    _run("tokenize", output, run, verbose,
         lambda progress: api.tokenize(sources, output, options, run, model, device, progress.start, progress.file))


@app.command()
def export(
    ctx: typer.Context,
    sources: List[str] = typer.Argument(..., metavar="CODES", help="Code files (.npy/.rvq), directories, globs, manifests or - (paths on stdin); README: Inputs."),
    output: Path = typer.Option(..., "--output", "-o", metavar="OUT_DIR", help="Directory for the shards, vocab.json and manifest."),
    fmt: str = FORMAT, pattern: str = PATTERN, n_q: Optional[int] = N_Q, vocab_offset: int = OFFSET,
    bos: bool = BOS, eos: bool = EOS, sep: bool = SEP, shard_size: str = SHARD_SIZE, index: str = INDEX,
    workers: int = WORKERS, shard_index: Optional[int] = SHARD_INDEX, num_shards: Optional[int] = NUM_SHARDS,
    preset: Optional[str] = PRESET, tokenizer: Optional[Path] = TOKENIZER, verbose: bool = VERBOSE,
) -> None:
    """Turn existing code files into token shards (the same shards rvq tokenize makes from their audio).

    \b
    Examples:
      rvq encode corpus/ -o codes/ && rvq export codes/ -o shards/ --pattern delay
      rvq export 'codes/**/*.rvq' -o shards/ --format wds
      rvq export codes.jsonl -o llasa/ --preset llasa --tokenizer Llasa-1B/tokenizer.json
    """
    from rvqtool.tokens import api

    options = _options(ctx, fmt, pattern, n_q, vocab_offset, bos, eos, sep, shard_size, index, preset, tokenizer)
    run = api.RunOptions(workers, shard_index=shard_index, num_shards=num_shards)
    _run("export", output, run, verbose,
         lambda progress: api.export(sources, output, options, run, progress.start, progress.file))


@app.command()
def detokenize(
    token_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="A directory written by rvq tokenize or rvq export."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT", help="Audio (.wav/.flac/.ogg) or codes (.npy/.rvq)."),
    doc: Optional[int] = typer.Option(None, "--doc", help="Document number (its line in documents.jsonl, from 0)."),
    doc_id: Optional[str] = typer.Option(None, "--id", help="Document id."),
    tokens_file: Optional[Path] = typer.Option(None, "--tokens", help="Tokens from elsewhere (an LM's sample): .npy, or integers in a text file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to decode with (default: the one in vocab.json)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", metavar="TOKENIZER_JSON", help="A --preset neutts corpus made with --tokenizer: that tokenizer.json (its speech ids are the tokenizer's)."),
    device: str = DEVICE,
) -> None:
    """Turn a document, or any token sequence, back into codes or audio (a --preset corpus's ids
    through its LM's layout, as vocab.json describes it).

    \b
    Examples:
      rvq detokenize shards/ --doc 0 -o first.wav
      rvq detokenize shards/ --id speech/0001 -o 0001.npy
      rvq detokenize shards/ --tokens sample.npy -o sample.wav
      rvq detokenize neutts/ --doc 0 --tokenizer neutts-air/tokenizer.json -o first.npy
    """
    from rvqtool.io.codes import save_codes
    from rvqtool.tokens.reader import TokenDir
    from rvqtool.tokens.vocab import load_vocab

    if sum(x is not None for x in (doc, doc_id, tokens_file)) != 1:
        raise UsageError("give exactly one of --doc, --id or --tokens")
    if tokens_file is not None:
        vocab = load_vocab(token_dir / "vocab.json", tokenizer)
        codes = vocab.to_codes(_read_tokens(tokens_file), strict=False)
    else:
        tokens = TokenDir(token_dir, tokenizer)
        entry = tokens.find(doc, doc_id)
        codes = tokens.vocab.to_codes(tokens.tokens(entry), entry["length"], entry["source_sample_rate"])
    if Path(output).suffix in (".npy", ".rvq"):
        save_codes(codes, output)
        return
    from rvqtool.cli.codecs import CodecsForCodes

    codec = CodecsForCodes(model, device).codec_for(codes)
    codec.check(codes)
    codec.decode_to_file(codes, Path(output))


def _read_tokens(path: Path):
    import numpy as np

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).reshape(-1)
        return np.array(path.read_text().split(), dtype=np.int64)
    except ValueError as exc:
        raise UserError(f"{path}: not a token array ({exc})")


# ---- shared by tokenize and export -----------------------------------------------------------------
def _options(ctx: typer.Context, fmt, pattern, n_q, vocab_offset, bos, eos, sep, shard_size, index, preset, tokenizer):
    from rvqtool.tokens.plan import LAYOUT_FLAGS, TokenOptions, refuse_layout_flags, tokens_per_shard

    if preset is not None:   # a layout flag given, even at its default value, is a mistake beside --preset
        given = [name for name in LAYOUT_FLAGS
                 if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")]
        refuse_layout_flags(preset, given)
    return TokenOptions(fmt, pattern, n_q, vocab_offset, bos, eos, sep, tokens_per_shard(shard_size), index,
                        preset, None if tokenizer is None else str(tokenizer))


def _run(what: str, output: Path, run: RunOptions, verbose: bool, job: Callable[[_Progress], Summary]) -> None:
    """Run the job with a progress display, then say what failed and what was done."""
    progress = _Progress(what, verbose)
    try:
        summary = job(progress)
    finally:
        progress.stop()
    failed = summary.failures if summary.complete else summary.new_failures
    for failure in failed:
        err.print(f"error: {failure.reason}", markup=False)
    if verbose or failed or not summary.complete:
        listed = f" (listed in {output / 'failures.jsonl'})" if failed and summary.complete else ""
        err.print(f"{what}: {summary.files_done} files encoded into {summary.shards_written} shards, "
                  f"{summary.shards_skipped} shards already done, {len(failed)} failed{listed}", markup=False)
    if not summary.complete and run.num_shards:
        err.print(f"part {run.shard_index} of {run.num_shards} done; the last part to finish writes the manifest "
                  "(or, once every part has finished, run the same command without --shard-index/--num-shards)",
                  markup=False)
    if failed:
        raise typer.Exit(1)


class _Progress:
    """Files, hours of audio, times real time and ETA on a terminal; per-file lines with -v."""

    def __init__(self, what: str, verbose: bool):
        self.what, self.verbose = what, verbose
        self.bar = None
        self.started = 0.0
        self.seconds = 0.0

    def start(self, files: int, seconds: float) -> None:
        self.started = time.monotonic()      # encoding starts: model loading and planning are done
        self.total_hours = seconds / 3600
        self.bar = ProgressBar(self.what, files, self.verbose, status=True).start()

    def file(self, entry: dict | Failure, seconds: float) -> None:
        if self.verbose and not isinstance(entry, Failure):
            err.print(f"{entry['source']}: {entry['n_tokens']} tokens", markup=False)
        self.seconds += seconds
        speed = self.seconds / max(1e-9, time.monotonic() - self.started)
        self.bar.advance(f"{self.seconds / 3600:.2f}/{self.total_hours:.2f} h  {speed:.0f}x real time")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
