"""The job directory OUT_DIR of a token job: its lock, its plan, its shard records, and what killed
runs left half-written.

An `fcntl` lock on `OUT_DIR/.lock` (released by the OS however the job ends) keeps a second job
out; parts of a split job share it, each holding a lock of its own part. `plan.json` is written
once, and a run whose plan differs from the one there is refused. A shard's record
`shard-NNNNN.json`, written after its files are whole, marks it done; a shard without a record of
this plan (or whose files are not the sizes it records) is redone from scratch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rvqtool.errors import UserError
from rvqtool.io.atomic import atomic_path, remove_abandoned
from rvqtool.io.locks import acquire, writable_directory
from rvqtool.tokens import shards
from rvqtool.tokens.plan import PLAN_FORMAT, VERSION, Plan, plan_hash
from rvqtool.tokens.vocab import HINTS

RECORD_FORMAT = "rvqtool-token-shard"


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

    def new_record(self, index: int) -> dict:
        """The record of shard `index` under the adopted plan, before its documents are added."""
        return {"format": RECORD_FORMAT, "version": VERSION, "plan_sha256": self.plan_sha256,
                "index": index, "n_tokens": 0, "documents": [], "failures": []}

    def save_record(self, record: dict) -> None:
        """Mark the record's shard done (its files are whole and in place)."""
        with atomic_path(self.record_path(record["index"])) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")

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
    old_options = old.get("options") if isinstance(old.get("options"), dict) else {}
    changed = [k for k in {**new["options"], **old_options} if old_options.get(k) != new["options"].get(k)]
    if changed:
        k = changed[0]
        return f"options differ: {k} was {old_options.get(k)!r}, now {new['options'].get(k)!r}"
    if old.get("vocab") != new["vocab"]:
        tokenizers = [(v.get("preset") or {}).get("tokenizer_sha256") if isinstance(v, dict) else None
                      for v in (old.get("vocab"), new["vocab"])]
        if tokenizers[0] != tokenizers[1]:
            was, now = (f"sha256 {t[:12]}" if t else "none" for t in tokenizers)
            return f"the tokenizer differs: {was} then, {now} now"
        return "the model or vocabulary differs"
    return "the inputs differ: files were added, removed or changed since"
