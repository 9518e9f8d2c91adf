"""Token corpora from Python, made exactly as `rvq tokenize` and `rvq export` make them.

Every choice those commands make lives here, not in the CLI: checking the options, collecting the
sources, loading the model, the windows per encoder call, and which engine runs the groups. So a
Python caller and the CLI write the same shards:

    from rvqtool.tokens import TokenOptions, tokenize
    summary = tokenize(["corpus/"], "shards/", TokenOptions(pattern="delay"))
    summary = export(["codes/"], "orpheus/", TokenOptions(preset="orpheus", tokenizer="tokenizer.json"))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rvqtool.errors import UsageError
from rvqtool.io.inputs import CODE_SUFFIXES
from rvqtool.tokens import sources as source_list
from rvqtool.tokens.engines import local_engine
from rvqtool.tokens.plan import TokenOptions, make_plan, template_for
from rvqtool.tokens.run import Engine, OnFile, OnStart, Summary, run_job



@dataclass(frozen=True)
class RunOptions:
    """How a job runs; nothing here changes what it writes (`TokenOptions` does)."""

    workers: int = 1                 # processes, each loading the model
    threads: int = 0                 # torch threads per worker (0: cores / workers)
    batch_windows: int = 0           # encoder windows per call (0: 16 on CUDA, 1 on CPU)
    shard_index: int | None = None   # with num_shards: do only shards i, i+N, ... (a Slurm array)
    num_shards: int | None = None
    engine: str = "local"            # local (this machine's processes) or ray
    address: str | None = None       # engine ray: the cluster to join (default: a local Ray)

    def check(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.threads < 0:
            raise UsageError(f"--threads must be >= 0, got {self.threads}")
        if self.batch_windows < 0:
            raise UsageError(f"--batch-windows must be >= 0, got {self.batch_windows}")
        if (self.shard_index is None) != (self.num_shards is None):
            raise UsageError("--shard-index and --num-shards go together")
        if self.num_shards is not None and not (self.num_shards >= 1 and 0 <= self.shard_index < self.num_shards):
            raise UsageError(f"--shard-index must be in [0, {self.num_shards}) and --num-shards >= 1")
        if self.engine not in ("local", "ray"):
            raise UsageError(f"--engine must be local or ray, got {self.engine}")
        if self.address is not None and self.engine != "ray":  # else silently ignored: the local engine joins no cluster
            raise UsageError(f"--address applies to --engine ray only: pass --engine ray --address {self.address}, "
                             "or drop --address")


def tokenize(sources: Sequence[str | Path], output: str | Path, options: TokenOptions = TokenOptions(),
             run: RunOptions = RunOptions(), model: str = "default", device: str = "auto",
             on_start: OnStart = lambda files, seconds: None, on_file: OnFile = lambda entry, seconds: None) -> Summary:
    """Encode audio (files, directories, globs, manifests, or '-' for paths on stdin) into token
    shards in `output`; resumable: the same call again finishes a killed job."""
    from rvqtool.codec import load_codec
    from rvqtool.io.audio import AUDIO_SUFFIXES
    from rvqtool.tokens.encoders import encoder_for

    options.check()
    run.check()
    found = source_list.collect([str(s) for s in sources], AUDIO_SUFFIXES, what="audio")
    preset = options.load_preset()           # a wrong tokenizer is refused before the model loads
    codec = load_codec(model, device)
    plan = make_plan("tokenize", found, options, template_for(codec), codec, preset)
    batch = run.batch_windows or (16 if codec.device.type == "cuda" else 1)
    in_process = run.engine == "local" and run.workers == 1
    encoder = encoder_for(codec, plan.vocab.level_count, batch) if in_process else None   # the model already loaded
    engine = _engine("tokenize", run, model, device, plan.vocab.level_count, encoder, batch)
    return run_job(plan, Path(output), engine, run.workers, run.shard_index, run.num_shards, on_start, on_file)


def export(sources: Sequence[str | Path], output: str | Path, options: TokenOptions = TokenOptions(),
           run: RunOptions = RunOptions(), on_start: OnStart = lambda files, seconds: None,
           on_file: OnFile = lambda entry, seconds: None) -> Summary:
    """Turn code files (`.npy`/`.rvq`; the first readable one names the model) into the token shards
    `tokenize` makes from their audio."""
    options.check()
    run.check()
    found = source_list.collect([str(s) for s in sources], CODE_SUFFIXES)
    plan = make_plan("export", found, options)
    engine = _engine("export", run, "", "cpu", plan.vocab.level_count, threads=1)   # reading needs no torch threads
    return run_job(plan, Path(output), engine, run.workers, run.shard_index, run.num_shards, on_start, on_file)


def _engine(kind: str, run: RunOptions, model: str, device: str, n_q: int, encoder=None, batch: int = 1,
            threads: int | None = None) -> Engine:
    """The engine `run` names. Ray's actors decide their device and windows per call themselves;
    the local one reuses `encoder` (this process's model) when it runs in process. `threads`: the
    default torch threads per worker (None: cores / workers)."""
    if run.engine == "ray":
        from rvqtool.tokens.ray_engine import ray_engine

        return ray_engine(kind, model, device, n_q, run.workers, run.address, run.threads or threads,
                          run.batch_windows)
    return local_engine(kind, model, device, n_q, run.workers, encoder, run.threads or threads, batch)
