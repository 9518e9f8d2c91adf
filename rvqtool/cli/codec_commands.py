"""`rvq encode`, `rvq decode`, `rvq info`: files in, files out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rvqtool.cli.app import DEVICE, MODEL, VERBOSE, app, run_file_jobs
from rvqtool.errors import UsageError, UserError


@app.command()
def encode(
    inputs: List[str] = typer.Argument(..., metavar="AUDIO", help="Audio files, directories, globs or manifests (README: Inputs), or - (the audio itself, on stdin)."),
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
    from rvqtool import file_jobs, load_codec
    from rvqtool.codec import check_channel_mode
    from rvqtool.io.audio import AUDIO_SUFFIXES
    from rvqtool.io.codes import is_complete

    if codes_format not in ("npy", "rvq"):
        raise UsageError(f"--format must be npy or rvq, got {codes_format}")
    check_channel_mode(channels)
    codec = load_codec(model, device)
    levels = codec.levels_for(n_q, bandwidth)
    jobs = file_jobs.plan(inputs, output, AUDIO_SUFFIXES, "." + codes_format, "audio")
    for job in jobs:
        if job.target != "-" and Path(job.target).suffix not in (".npy", ".rvq"):
            raise UserError(f"{job.target}: code files end in .npy or .rvq")

    def work(job: file_jobs.FileJob) -> None:
        codec.encode_file_to(job.source, job.target, levels, channels)  # codes streamed to the file

    run_file_jobs(jobs, work, overwrite, verbose, "encode", complete=is_complete, output=output)


@app.command()
def decode(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help="Code files (.npy with .npy.json, or .rvq), directories, globs or manifests (README: Inputs), or - (the codes themselves, on stdin)."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT", help="Audio file (.wav, .flac, .ogg), a directory, or - (WAV on stdout)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to decode with (default: the shipped version with the codes' hash, else the model file they record)."),
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
    from rvqtool import file_jobs
    from rvqtool.cli.codecs import CodecsForCodes
    from rvqtool.codec import resolve_device
    from rvqtool.io.audio import write_audio
    from rvqtool.io.code_stream import open_codes
    from rvqtool.io.inputs import CODE_SUFFIXES

    resolve_device(device)  # before the batch: a wrong --device is wrong for every file
    jobs = file_jobs.plan(inputs, output, CODE_SUFFIXES, ".wav")
    codecs = CodecsForCodes(model, device)

    def work(job: file_jobs.FileJob) -> None:
        codes = open_codes(job.source)   # a .npy is read window by window while it is decoded
        codec = codecs.codec_for(codes, job.source)
        codec.check(codes, job.source)
        if job.target == "-":
            write_audio("-", codec.decode(codes, n_q), codec.output_sample_rate)
        else:
            codec.decode_to_file(codes, Path(job.target), n_q)

    run_file_jobs(jobs, work, overwrite, verbose, "decode", output=output)


@app.command()
def info(
    path: Optional[str] = typer.Argument(None, metavar="FILE", help="An audio file, a code file (.npy/.rvq), or a model (.safetensors, a shipped name or KIND:PATH); none: list the shipped models."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Describe an audio file, a code file or a model; without FILE, list the shipped models.

    \b
    Examples:
      rvq info                   # shipped versions, and the one 'default' stands for
      rvq info talk.npy
      rvq info default --json
    """
    from rvqtool.describe import describe, shipped

    facts = shipped() if path is None else describe(path)
    if as_json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
