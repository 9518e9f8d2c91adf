"""The token job's old home, kept importable for one release: its stages now live in
`rvqtool.tokens.plan` (options, headers, planning), `.jobdir` (lock, plan adoption, records,
temporaries), `.run` (write loop, manifest) and `.engines` (in process, process pool)."""
from __future__ import annotations

from rvqtool.tokens.engines import local_engine
from rvqtool.tokens.jobdir import RECORD_FORMAT, JobDir, difference, without_hints
from rvqtool.tokens.plan import (HEADER_CHUNK, HEADER_THREADS, PLAN_FORMAT, VERSION, Plan, TokenOptions,
                                 audio_frames, fits, make_plan, plan_hash, read_headers, resampled_length,
                                 template_for, tokens_per_shard)
from rvqtool.tokens.run import Engine, Result, Summary, finish, groups_for, run_job

__all__ = ["HEADER_CHUNK", "HEADER_THREADS", "PLAN_FORMAT", "RECORD_FORMAT", "VERSION", "Engine", "JobDir", "Plan",
           "Result", "Summary", "TokenOptions", "audio_frames", "difference", "finish", "fits", "groups_for",
           "local_engine", "make_plan", "plan_hash", "read_headers", "resampled_length", "run_job",
           "template_for", "tokens_per_shard", "without_hints"]
