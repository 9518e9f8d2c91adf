"""The token job: plan, encode, write shards, resume.

1. **Plan.** Collect the sources (input order, directories sorted), read each file's header to
   know its frames exactly (audio: length after resampling, as soxr rounds; codes: T), and cut the
   ordered list into shards of about `shard_tokens` tokens. The plan depends only on the inputs
   and options, so every run of the same command makes the same plan; it is kept in
   `OUT_DIR/plan.json`, and a run whose plan differs from the one there is refused.
2. **Work.** Files are encoded in groups by worker processes (or in this process); results come
   back in plan order and are streamed into their shard's files. A shard is written under
   temporary names, renamed when whole, and then its record `shard-NNNNN.json` is written: the
   record marks the shard done. A file that fails is logged in its shard's record and skipped.
3. **Resume.** A shard whose record is there (same plan, files of the recorded sizes) is done and
   skipped; anything else is redone from scratch. Since every file's codes depend only on the
   file, a killed and rerun job writes byte-identical shards.
4. **Finish.** When every shard is done: `failures.jsonl`, `documents.jsonl` (a line per document:
   shard, offset, tokens, id, source, text, metadata) and `manifest.json` (shards, totals).

`shard_index`/`num_shards` run shards i, i+N, i+2N, ... only (a Slurm array, all parts writing
into one shared OUT_DIR); whichever part finds every shard done at its end writes the manifest, and
the same command without them (which then encodes nothing) does too.
An `fcntl` lock on `OUT_DIR/.lock` (released by the OS however the job ends) keeps a second job out.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from rvqtool.errors import UsageError, UserError
from rvqtool.io.atomic import atomic_path, remove_abandoned
from rvqtool.io.codes import Codes, CodesMeta
from rvqtool.io.locks import acquire, writable_directory
from rvqtool.tokens import patterns, shards
from rvqtool.tokens.sources import Source
from rvqtool.tokens.vocab import HINTS, Vocab

PLAN_FORMAT = "rvqtool-token-plan"
RECORD_FORMAT = "rvqtool-token-shard"
VERSION = 1


@dataclass(frozen=True)
class TokenOptions:
    """Everything that shapes the shards."""

    format: str = "bin"
    pattern: str = "flat"
    n_q: int | None = None           # None: every level of the model (or of the first code file)
    vocab_offset: int = 0
    bos: bool = True
    eos: bool = True
    sep: bool = False
    shard_tokens: int = 100_000_000
    index: str = "npy"               # bin only: npy or megatron

    def check(self) -> None:
        if self.format not in shards.FORMATS:
            raise UsageError(f"--format must be one of {', '.join(shards.FORMATS)}, got {self.format}")
        if self.pattern not in patterns.PATTERNS:
            raise UsageError(f"--pattern must be one of {', '.join(patterns.PATTERNS)}, got {self.pattern}")
        if self.index not in shards.INDEXES:
            raise UsageError(f"--index must be npy or megatron, got {self.index}")
        if self.index != "npy" and self.format != "bin":  # else silently ignored: only bin shards have an index file
            raise UsageError(f"--index {self.index} applies to --format bin only, not {self.format}: "
                             "drop --index, or pass --format bin")
        if self.pattern == "coarse" and self.n_q is None:
            raise UsageError("--pattern coarse needs --n-q N (how many of the first levels to keep)")
        if self.n_q is not None and self.n_q < 1:
            raise UsageError(f"--n-q must be at least 1, got {self.n_q}")
        if self.vocab_offset < 0:
            raise UsageError(f"--vocab-offset must be >= 0, got {self.vocab_offset}")
        if self.shard_tokens < 1:
            raise UsageError("--shard-size must be at least 1 token")
        if self.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UserError("--format parquet needs pyarrow: pip install pyarrow")


@dataclass
class Summary:
    planned_files: int = 0
    shards: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    files_done: int = 0
    tokens: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)      # every failure of the job (plan + shards)
    new_failures: list[dict] = field(default_factory=list)  # those met in this run
    complete: bool = False


# ---- planning -----------------------------------------------------------------------------------
def resampled_length(frames: int, source_rate: int, rate: int) -> int:
    """Samples soxr gives for `frames` at `source_rate` -> `rate` (it rounds half up)."""
    return frames if source_rate == rate else (2 * frames * rate + source_rate) // (2 * source_rate)


def audio_frames(path: str, sample_rate: int, hop: int) -> int:
    from rvqtool.io.audio import audio_info

    info = audio_info(path)
    if info.frames == 0:
        raise UserError(f"{path}: audio has no samples")
    return math.ceil(resampled_length(info.frames, info.sample_rate, sample_rate) / hop)


def code_header(path: str) -> tuple[CodesMeta, tuple[int, ...]]:
    """(metadata, shape [channels, n_q, T]) of a code file without reading all its codes."""
    from rvqtool.io.codes import read_header

    return read_header(path)


# headers are read by threads: they overlap the waits of cold or network storage (from a warm page
# cache the Python around each open keeps it near one core's speed)
HEADER_THREADS = 8
HEADER_CHUNK = 256     # sources a thread takes at a time


def read_headers(kind: str, sources: list[Source], codec=None) -> list[tuple[CodesMeta | None, int] | str]:
    """Each source's (code metadata, or None for audio; frames), or why it cannot be used, in order."""
    def one(src: Source) -> tuple[CodesMeta | None, int] | str:
        try:
            if kind == "tokenize":
                return None, audio_frames(src.path, codec.sample_rate, codec.hop_length)
            meta, shape = code_header(src.path)
            return meta, shape[-1]
        except UserError as exc:
            return str(exc)

    def chunk(part: list[Source]) -> list[tuple[CodesMeta | None, int] | str]:
        return [one(src) for src in part]

    parts = [sources[i:i + HEADER_CHUNK] for i in range(0, len(sources), HEADER_CHUNK)]
    if len(parts) <= 1:
        return chunk(sources)
    with ThreadPoolExecutor(HEADER_THREADS) as pool:
        return [header for part in pool.map(chunk, parts) for header in part]


def fits(meta: CodesMeta, template: dict, n_q: int, path: str) -> None:
    """Refuse codes that cannot join this vocabulary."""
    if meta.model_sha256 != template["model_sha256"] or meta.codebook_size != template["codebook_size"] \
            or meta.hop_length != template["hop_length"] or meta.sample_rate != template["sample_rate"]:
        raise UserError(f"{path}: made by model '{meta.model}' ({meta.model_sha256[:12]}), not by "
                        f"'{template['model']}' ({template['model_sha256'][:12]}) like the rest")
    if meta.channels != 1:
        raise UserError(f"{path}: {meta.channels} channels (--channels split); token corpora take mono codes")
    if meta.n_q < n_q:
        raise UserError(f"{path}: {meta.n_q} levels, fewer than the {n_q} asked for")


@dataclass
class Plan:
    kind: str                 # "tokenize" or "export"
    options: TokenOptions
    vocab: Vocab
    files: list[dict]         # the good ones: path, id, text, metadata, frames, tokens
    bad: list[dict]           # files refused from their header: path, id, reason
    shards: list[dict]        # index, first, count, tokens (ranges over `files`)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": VERSION, "kind": self.kind, "options": asdict(self.options),
                "vocab": self.vocab.to_dict(), "shards": self.shards, "files": self.files, "bad": self.bad}

    @cached_property
    def sha256(self) -> str:  # a plan is not changed once made
        return plan_hash(self.to_dict())

    @property
    def seconds(self) -> float:
        return sum(f["frames"] for f in self.files) / float(self.vocab.codes_meta["frame_rate"])


def make_plan(kind: str, sources: list[Source], options: TokenOptions, template: CodesMeta | None = None,
              codec=None) -> Plan:
    """kind "tokenize" (audio, needs `codec`) or "export" (code files; the first readable one sets the model)."""
    options.check()
    headers: list[tuple[Source, int | str]] = []
    for src, header in zip(sources, read_headers(kind, sources, codec)):
        if isinstance(header, str):
            headers.append((src, header))
            continue
        meta, frames = header
        if meta is not None:            # code files: the first readable one sets the model
            template = template or meta
            try:
                fits(meta, template.to_dict(), options.n_q or template.n_q, src.path)
            except UserError as exc:
                headers.append((src, str(exc)))
                continue
        headers.append((src, frames))
    if template is None:
        raise UserError("no input could be read: " + "; ".join(str(h[1]) for h in headers[:3]))
    if getattr(template, "segment_length", 0):
        # per-segment scales (EnCodec 48 kHz) are not carried per document in token shards yet
        raise UserError(f"model '{template.model}' codes audio in normalised segments, whose scales "
                        "token shards do not carry yet: use rvq encode for this model")
    n_q = options.n_q or template.n_q
    if not 1 <= n_q <= template.n_q:
        raise UsageError(f"--n-q must be between 1 and {template.n_q}, got {n_q}")
    vocab = Vocab.for_codes(template, options.pattern, n_q, offset=options.vocab_offset,
                            bos=options.bos, eos=options.eos, sep=options.sep)
    files, bad = [], []
    for src, frames in headers:
        if isinstance(frames, str):
            bad.append({"path": src.path, "id": src.id, "reason": frames})
        else:
            files.append({**src.to_dict(), "frames": frames, "tokens": vocab.document_length(frames)})
    plan_shards: list[dict] = []
    for i, f in enumerate(files):
        last = plan_shards[-1] if plan_shards else None
        if last is None or last["tokens"] + f["tokens"] > options.shard_tokens and last["count"]:
            last = {"index": len(plan_shards), "first": i, "count": 0, "tokens": 0}
            plan_shards.append(last)
        last["count"] += 1
        last["tokens"] += f["tokens"]
    return Plan(kind, options, vocab, files, bad, plan_shards)


def template_for(codec) -> CodesMeta:
    """The metadata this codec writes (read off a one-frame encode, so new fields come along)."""
    return codec.encode_blocks([np.zeros((1, codec.hop_length), np.float32)], None, "mono", codec.sample_rate).meta


# ---- the job directory --------------------------------------------------------------------------
class JobDir:
    """OUT_DIR: its lock, plan, shard records and final files. `plan_sha256` (set by `adopt`) is the
    hash of the plan in plan.json, which shard records and the manifest name."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._locks: list[int] = []
        self.plan_sha256 = ""

    def lock(self, shard_index: int | None, num_shards: int | None) -> None:
        """Whole jobs hold `.lock` exclusively; parts of a split job share it, each holding its own."""
        writable_directory(self.path)
        locks = [(".lock", bool(num_shards))]
        if num_shards:
            locks.append((f".lock-{shard_index}-of-{num_shards}", False))
        for name, shared in locks:
            try:
                fd = acquire(self.path, name, shared)
            except UserError:
                self.unlock()
                raise
            self._locks.append(fd)

    def unlock(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks = []

    def clean_temporaries(self, indices: list[int]) -> None:
        """Remove what killed runs left half-written (never a live writer's): every abandoned
        temporary here, and these shards' `.shard-N.bin.part` of rvqtool before names were unique."""
        remove_abandoned(self.path)
        for index in indices:
            for p in self.path.glob(f".{shards.shard_name(index)}.*.part"):
                p.unlink(missing_ok=True)

    def adopt(self, plan: Plan) -> None:
        """Write plan.json, or check that the one there is this plan. A plan.json of an older rvqtool
        that recorded the model's path is this plan if all else is equal: it is kept as it is, and
        so are the shards done under its hash."""
        target = self.path / "plan.json"
        if target.exists():
            try:
                old = json.loads(target.read_text())
            except (json.JSONDecodeError, OSError):
                old = None
            same = without_hints(old)
            if plan_hash(same) != plan.sha256:      # equal JSON, equal hash: no second copy of a large plan
                raise UserError(f"{self.path}: holds another job ({difference(same, plan.to_dict())}); "
                                "use a new output directory, or delete this one to start over")
            self.plan_sha256 = plan.sha256 if same is old else plan_hash(old)
            return
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(plan.to_dict(), indent=1) + "\n")
        self.plan_sha256 = plan.sha256

    def record_path(self, index: int) -> Path:
        return self.path / (shards.shard_name(index) + ".json")

    def record(self, index: int) -> dict | None:
        """The shard's record if the shard is whole and belongs to the adopted plan, else None."""
        try:
            record = json.loads(self.record_path(index).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if record.get("plan_sha256") != self.plan_sha256:
            return None
        for name, facts in record.get("files", {}).items():
            p = self.path / name
            if not p.is_file() or p.stat().st_size != facts.get("bytes"):
                return None
        return record


def plan_hash(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def without_hints(plan: dict | None) -> dict | None:
    """A plan as read from plan.json, less what older versions recorded that is no part of a job
    (the same object when there is nothing to take out)."""
    if not isinstance(plan, dict) or not isinstance(plan.get("vocab"), dict) \
            or not isinstance(plan["vocab"].get("codes_meta"), dict) \
            or not any(k in plan["vocab"]["codes_meta"] for k in HINTS):
        return plan
    meta = {k: v for k, v in plan["vocab"]["codes_meta"].items() if k not in HINTS}
    return {**plan, "vocab": {**plan["vocab"], "codes_meta": meta}}


def difference(old: dict | None, new: dict) -> str:
    if old is None or old.get("format") != PLAN_FORMAT:
        return "its plan.json is unreadable or not a token plan"
    if old.get("kind") != new["kind"]:
        return f"it was made by rvq {old.get('kind')}, this is rvq {new['kind']}"
    changed = [k for k in new["options"] if old.get("options", {}).get(k) != new["options"][k]]
    if changed:
        k = changed[0]
        return f"options differ: {k} was {old['options'].get(k)!r}, now {new['options'][k]!r}"
    if old.get("vocab") != new["vocab"]:
        return "the model or vocabulary differs"
    return "the inputs differ: files were added, removed or changed since"


# ---- running ------------------------------------------------------------------------------------
Result = Codes | str
Engine = Callable[[list[tuple[int, list[str]]]], Iterator[tuple[int, list[Result]]]]


def groups_for(plan: Plan, shard_list: list[dict], workers: int) -> list[tuple[int, list[str]]]:
    """Consecutive files of the shards to do, in groups small enough to keep every worker busy."""
    indices = [i for s in shard_list for i in range(s["first"], s["first"] + s["count"])]
    size = max(1, min(16, len(indices) // (4 * workers) if workers > 1 else 16))
    out, run = [], []
    for i in indices:
        if run and (i != run[-1] + 1 or len(run) == size):
            out.append((run[0], [plan.files[j]["path"] for j in run]))
            run = []
        run.append(i)
    if run:
        out.append((run[0], [plan.files[j]["path"] for j in run]))
    return out


def run_job(plan: Plan, out_dir: Path, engine: Engine, workers: int = 1, shard_index: int | None = None,
            num_shards: int | None = None, on_start: Callable[[int, float], None] = lambda n, s: None,
            on_file: Callable[[dict, float], None] = lambda r, s: None) -> Summary:
    """Do the plan's unfinished shards (of this part, for a split job) and, once all are done, the manifest."""
    job = JobDir(out_dir)
    job.lock(shard_index, num_shards)
    try:
        job.adopt(plan)
        plan.vocab.save(out_dir / "vocab.json")
        mine = [s for s in plan.shards if not num_shards or s["index"] % num_shards == shard_index]
        todo = [s for s in mine if job.record(s["index"]) is None]
        job.clean_temporaries([s["index"] for s in todo])
        summary = Summary(planned_files=len(plan.files), shards=len(plan.shards),
                          shards_skipped=len(mine) - len(todo))
        if todo:
            on_start(sum(s["count"] for s in todo),
                     sum(plan.files[i]["frames"] for s in todo for i in range(s["first"], s["first"] + s["count"]))
                     / float(plan.vocab.codes_meta["frame_rate"]))
            _write_shards(plan, job, todo, engine(groups_for(plan, todo, workers)), summary, on_file)
        finish(plan, job, summary)
        return summary
    finally:
        job.unlock()


def _write_shards(plan: Plan, job: JobDir, todo: list[dict], results: Iterator[tuple[int, list[Result]]],
                  summary: Summary, on_file: Callable[[dict, float], None]) -> None:
    owner = {i: s for s in todo for i in range(s["first"], s["first"] + s["count"])}
    writer, record = None, None
    frame_rate = float(plan.vocab.codes_meta["frame_rate"])
    try:
        for first, group in results:
            for i, result in enumerate(group, first):
                shard = owner[i]
                if writer is None:
                    writer = shards.open_writer(plan.options.format, job.path, shard["index"], plan.vocab,
                                                plan.options.index)
                    record = {"format": RECORD_FORMAT, "version": VERSION, "plan_sha256": job.plan_sha256,
                              "index": shard["index"], "n_tokens": 0, "documents": [], "failures": []}
                entry = _add(plan, writer, record, plan.files[i], result)
                summary.seconds += plan.files[i]["frames"] / frame_rate
                if "reason" in entry:
                    summary.new_failures.append(entry)
                else:
                    summary.files_done += 1
                on_file(entry, plan.files[i]["frames"] / frame_rate)
                if i == shard["first"] + shard["count"] - 1:
                    record["files"] = writer.finish()
                    writer = None
                    with atomic_path(job.record_path(shard["index"])) as tmp:
                        tmp.write_text(json.dumps(record, indent=1) + "\n")
                    summary.shards_written += 1
    finally:
        if writer is not None:
            writer.abort()


def _add(plan: Plan, writer: shards.ShardWriter, record: dict, file: dict, result: Result) -> dict:
    if not isinstance(result, str):
        try:
            fits(result.meta, plan.vocab.codes_meta, plan.vocab.n_q, file["path"])
        except UserError as exc:
            result = str(exc)
    if isinstance(result, str):
        failure = {"path": file["path"], "id": file["id"], "reason": result}
        record["failures"].append(failure)
        return failure
    tokens = plan.vocab.document(result.codes[0])
    meta = result.meta
    doc = {"id": file["id"], "source": file["path"], "offset": record["n_tokens"], "n_tokens": len(tokens),
           "n_frames": result.frames, "length": meta.length, "duration": meta.length / meta.sample_rate,
           "source_sample_rate": meta.source_sample_rate, "text": file["text"], "metadata": file["metadata"]}
    writer.add(doc, tokens)
    record["documents"].append(doc)
    record["n_tokens"] += len(tokens)
    return doc


def finish(plan: Plan, job: JobDir, summary: Summary) -> None:
    """If every shard is done: failures.jsonl, documents.jsonl and manifest.json (all atomic)."""
    records = [job.record(s["index"]) for s in plan.shards]
    summary.failures = [{**b, "stage": "header"} for b in plan.bad]
    if any(r is None for r in records):
        return
    summary.complete = True
    documents, shard_list = [], []
    for record in records:
        summary.failures += [{**f, "stage": "encode"} for f in record["failures"]]
        for position, doc in enumerate(record["documents"]):
            documents.append({"doc": len(documents), "shard": record["index"], "position": position, **doc})
        shard_list.append({"index": record["index"], "files": record["files"], "n_documents": len(record["documents"]),
                           "n_tokens": record["n_tokens"], "n_failed": len(record["failures"])})
    summary.tokens = sum(s["n_tokens"] for s in shard_list)
    with atomic_path(job.path / "failures.jsonl") as tmp:
        tmp.write_text("".join(shards.json_line(f) for f in summary.failures))
    with atomic_path(job.path / "documents.jsonl") as tmp:
        tmp.write_text("".join(shards.json_line(d) for d in documents))
    manifest = {"format": "rvqtool-token-manifest", "version": VERSION, "plan_sha256": job.plan_sha256,
                "format_of_shards": plan.options.format, "pattern": plan.options.pattern, "dtype": plan.vocab.dtype.name,
                "vocab": "vocab.json", "documents": "documents.jsonl", "failures": "failures.jsonl",
                "n_documents": len(documents), "n_failed": len(summary.failures), "n_tokens": summary.tokens,
                "seconds": sum(d["duration"] for d in documents), "shards": shard_list}
    with atomic_path(job.path / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


# ---- engines ------------------------------------------------------------------------------------
def local_engine(kind: str, model: str, device: str, n_q: int, workers: int, encoder=None,
                 threads: int | None = None, batch: int = 1) -> Engine:
    """Groups encoded in this process (workers=1, reusing `encoder` when given) or by a process pool
    (spawned: each worker loads the model once), with `threads` torch threads per worker
    (default: cores // workers) and `batch` windows per encoder call."""
    from rvqtool.tokens import encoders

    threads = threads or encoders.cpu_threads(workers)

    def in_process(groups):
        import torch

        torch.set_num_threads(threads)
        worker = encoder or encoders.make_encoder(kind, model, device, n_q, batch)
        for first, paths in groups:
            for k, result in enumerate(worker.iter_group(paths)):
                yield first + k, [result]

    def pooled(groups):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # an executor, not a Pool: a worker that dies (out of memory, killed) fails the job with a
        # message instead of leaving it waiting forever for that worker's results
        with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), encoders.init_worker,
                                 (kind, model, device, n_q, threads, batch)) as pool:
            try:
                yield from pool.map(encoders.run_group, groups)
            except BrokenProcessPool:
                raise UserError("a worker process died (out of memory? killed?); finished shards are kept: "
                                "run the same command again to go on")

    return in_process if workers <= 1 else pooled


def tokens_per_shard(text: str) -> int:
    """'100M', '5e6', '250k', '1G' or a plain count of tokens."""
    scale = {"k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9}
    value = text.strip().lower()
    try:
        if value and value[-1] in scale:
            return int(float(value[:-1]) * scale[value[-1]])
        return int(float(value))
    except ValueError:
        raise UsageError(f"--shard-size must be a number of tokens such as 100M or 250k, got {text!r}")
