"""Stages 2-4 of a token job: work, resume, finish.

Groups of files are encoded by an engine (`rvqtool.tokens.engines`, or Ray); results come back in
plan order and are streamed into their shard's files, written under temporary names and renamed
when whole, after which the shard's record is written. A file that fails is logged in its shard's
record and skipped. Since every file's codes depend only on the file, a killed and rerun job
writes byte-identical shards. When every shard is done: `failures.jsonl`, `documents.jsonl` (a
line per document: shard, offset, tokens, id, source, text, metadata, and with a preset its
layout facts) and `manifest.json`.

`shard_index`/`num_shards` run shards i, i+N, i+2N, ... only (a Slurm array, all parts writing
into one shared OUT_DIR); whichever part finds every shard done at its end writes the manifest, and
the same command without them (which then encodes nothing) does too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rvqtool.errors import Failure, UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.codes import Codes
from rvqtool.tokens import shards
from rvqtool.tokens.jobdir import JobDir
from rvqtool.tokens.plan import VERSION, Plan, fits_vocab


@dataclass
class Summary:
    """What one run of a job did, and whether the job is now complete (its manifest written)."""

    planned_files: int = 0
    shards: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    files_done: int = 0
    tokens: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)      # every failure of the job (plan + shards)
    new_failures: list[Failure] = field(default_factory=list)  # those met in this run
    complete: bool = False


Result = Codes | Failure
Engine = Callable[[list[tuple[int, list[str]]]], Iterator[tuple[int, list[Result]]]]
OnStart = Callable[[int, float], None]              # files to do, seconds of audio in them
OnFile = Callable[[dict | Failure, float], None]    # a file's document (or its Failure), its seconds


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
            num_shards: int | None = None, on_start: OnStart = lambda n, s: None,
            on_file: OnFile = lambda r, s: None) -> Summary:
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
                  summary: Summary, on_file: OnFile) -> None:
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
                    record = job.new_record(shard["index"])
                entry = _add(plan, writer, record, plan.files[i], result)
                summary.seconds += plan.files[i]["frames"] / frame_rate
                if isinstance(entry, Failure):
                    summary.new_failures.append(entry)
                else:
                    summary.files_done += 1
                on_file(entry, plan.files[i]["frames"] / frame_rate)
                if i == shard["first"] + shard["count"] - 1:
                    record["files"] = writer.finish()
                    writer = None
                    job.save_record(record)
                    summary.shards_written += 1
    finally:
        if writer is not None:
            writer.abort()


def _add(plan: Plan, writer: shards.ShardWriter, record: dict, file: dict, result: Result) -> dict | Failure:
    """The file's document, added to the shard, or its Failure, added to the shard's record."""
    if not isinstance(result, Failure):
        try:
            fits_vocab(result.meta, plan.vocab, file["path"])
            tokens, layout = plan.vocab.file_document(result, file)
        except UserError as exc:
            result = Failure(file["path"], str(exc))
    if isinstance(result, Failure):
        record["failures"].append({"path": file["path"], "id": file["id"], "reason": result.reason})
        return result
    meta = result.meta
    doc = {"id": file["id"], "source": file["path"], "offset": record["n_tokens"], "n_tokens": len(tokens),
           "n_frames": result.frames, "length": meta.length, "duration": meta.length / meta.sample_rate,
           "source_sample_rate": meta.source_sample_rate, "text": file["text"], "metadata": file["metadata"]}
    if layout is not None:         # a preset's facts beside the ids (CSM's text frames, Moshi's streams)
        doc["layout"] = layout
    writer.add(doc, tokens)
    record["documents"].append(doc)
    record["n_tokens"] += len(tokens)
    return doc


def finish(plan: Plan, job: JobDir, summary: Summary) -> None:
    """If every shard is done: failures.jsonl, documents.jsonl and manifest.json (all atomic)."""
    records = [job.record(s["index"]) for s in plan.shards]
    failures = [{**b, "stage": "header"} for b in plan.bad]
    if any(r is None for r in records):
        summary.failures = [Failure(f["path"], f["reason"]) for f in failures]
        return
    summary.complete = True
    documents, shard_list = [], []
    for record in records:
        failures += [{**f, "stage": "encode"} for f in record["failures"]]
        for position, doc in enumerate(record["documents"]):
            documents.append({"doc": len(documents), "shard": record["index"], "position": position, **doc})
        shard_list.append({"index": record["index"], "files": record["files"], "n_documents": len(record["documents"]),
                           "n_tokens": record["n_tokens"], "n_failed": len(record["failures"])})
    summary.failures = [Failure(f["path"], f["reason"]) for f in failures]
    summary.tokens = sum(s["n_tokens"] for s in shard_list)
    with atomic_path(job.path / "failures.jsonl") as tmp:
        tmp.write_text("".join(shards.json_line(f) for f in failures))
    with atomic_path(job.path / "documents.jsonl") as tmp:
        tmp.write_text("".join(shards.json_line(d) for d in documents))
    manifest = {"format": "rvqtool-token-manifest", "version": VERSION, "plan_sha256": job.plan_sha256,
                "format_of_shards": plan.options.format, "pattern": plan.vocab.pattern, "dtype": plan.vocab.dtype.name,
                "vocab": "vocab.json", "documents": "documents.jsonl", "failures": "failures.jsonl",
                "n_documents": len(documents), "n_failed": len(failures), "n_tokens": summary.tokens,
                "seconds": sum(d["duration"] for d in documents), "shards": shard_list}
    with atomic_path(job.path / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
