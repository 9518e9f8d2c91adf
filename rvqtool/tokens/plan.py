"""Stage 1 of a token job: the plan.

Collect what shapes the shards (`TokenOptions`), read each source's header to know its frames
exactly (audio: its length after resampling, as soxr rounds; code files: T), and cut the ordered
list of files into shards of about `shard_tokens` tokens. The plan depends only on the inputs and
options, so every run of the same command makes the same plan (and the same `Plan.sha256`, which
the job directory, shard records and manifest name).
"""
from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from rvqtool.errors import Failure, UsageError, UserError
from rvqtool.io.codes import CodesMeta, read_header
from rvqtool.tokens import patterns, shards
from rvqtool.tokens.sources import Source
from rvqtool.tokens.vocab import PresetVocab, Vocab

if TYPE_CHECKING:
    from rvqtool.tokens.presets import Preset

PLAN_FORMAT = "rvqtool-token-plan"
VERSION = 1          # of the plan, and of the shard records and manifest written under it


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
    preset: str | None = None        # an LM's id layout (rvqtool.tokens.presets), in place of the five above
    tokenizer: str | None = None     # with preset: the LM's tokenizer.json, for whole training sequences

    def check(self) -> None:
        if self.preset is not None:
            from rvqtool.tokens.presets import PRESETS

            if self.preset not in PRESETS:
                raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset}")
            defaults = {f.name: f.default for f in fields(self) if f.name in LAYOUT_FLAGS}
            refuse_layout_flags(self.preset, [k for k, v in defaults.items() if getattr(self, k) != v])
        elif self.tokenizer is not None:
            raise UsageError("--tokenizer goes with --preset NAME (the LM whose tokenizer it is)")
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

    def load_preset(self) -> "Preset | None":
        """The preset these options name, with its tokenizer loaded (None without a preset)."""
        from rvqtool.tokens.presets import make_preset

        return make_preset(self.preset, self.tokenizer) if self.preset is not None else None

    def to_dict(self) -> dict:
        """What the plan records: the tokenizer by its hash (in the vocabulary), not by where it
        lies, and no preset key without one (plans of runs without --preset stay as they were)."""
        options = asdict(self)
        del options["tokenizer"]
        if options["preset"] is None:
            del options["preset"]
        return options


# the options a preset's layout replaces, with their flags
LAYOUT_FLAGS = {"pattern": "--pattern", "vocab_offset": "--vocab-offset", "bos": "--bos/--no-bos",
                "eos": "--eos/--no-eos", "sep": "--sep"}


def refuse_layout_flags(preset: str, given: list[str]) -> None:
    """A preset lays out its own ids: `given` layout options (TokenOptions names) are a mistake."""
    if given:
        raise UsageError(f"--preset {preset} sets the token layout itself: drop "
                         + ", ".join(LAYOUT_FLAGS[k] for k in given))


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


def resampled_length(frames: int, source_rate: int, rate: int) -> int:
    """Samples soxr gives for `frames` at `source_rate` -> `rate` (it rounds half up)."""
    return frames if source_rate == rate else (2 * frames * rate + source_rate) // (2 * source_rate)


def audio_frames(path: str, sample_rate: int, hop: int, whole_frames_only: bool = False) -> int:
    """Frames of the codes of an audio file (`whole_frames_only`: a model that codes no partial frame, NeuCodec)."""
    from rvqtool.io.audio import audio_info

    info = audio_info(path)
    if info.frames == 0:
        raise UserError(f"{path}: audio has no samples")
    samples = resampled_length(info.frames, info.sample_rate, sample_rate)
    return samples // hop if whole_frames_only else math.ceil(samples / hop)


# headers are read by threads: they overlap the waits of cold or network storage (from a warm page
# cache the Python around each open keeps it near one core's speed)
HEADER_THREADS = 8
HEADER_CHUNK = 256     # sources a thread takes at a time


def read_headers(kind: str, sources: list[Source], codec=None) -> list[tuple[CodesMeta | None, int] | Failure]:
    """Each source's (code metadata, or None for audio; frames), or why it cannot be used, in order."""
    def one(src: Source) -> tuple[CodesMeta | None, int] | Failure:
        try:
            if kind == "tokenize":
                return None, audio_frames(src.path, codec.sample_rate, codec.hop_length, codec.whole_frames_only)
            meta, shape = read_header(src.path)
            return meta, shape[-1]
        except UserError as exc:
            return Failure(src.path, str(exc))

    def chunk(part: list[Source]) -> list[tuple[CodesMeta | None, int] | Failure]:
        return [one(src) for src in part]

    parts = [sources[i:i + HEADER_CHUNK] for i in range(0, len(sources), HEADER_CHUNK)]
    if len(parts) <= 1:
        return chunk(sources)
    with ThreadPoolExecutor(HEADER_THREADS) as pool:
        return [header for part in pool.map(chunk, parts) for header in part]


def fits(meta: CodesMeta, template: dict, levels: int, path: str, channels: int | None = None) -> None:
    """Refuse codes that cannot join this vocabulary of `levels` levels: mono codes, or
    (`channels`, presets that take stereo) codes of that many channels."""
    if meta.model_sha256 != template["model_sha256"] or meta.codebook_size != template["codebook_size"] \
            or meta.hop_length != template["hop_length"] or meta.sample_rate != template["sample_rate"]:
        raise UserError(f"{path}: made by model '{meta.model}' ({meta.model_sha256[:12]}), not by "
                        f"'{template['model']}' ({template['model_sha256'][:12]}) like the rest")
    if channels is None and meta.channels != 1:
        raise UserError(f"{path}: {meta.channels} channels (--channels split); token corpora take mono codes")
    if channels is not None and meta.channels != channels:
        raise UserError(f"{path}: {meta.channels} channel(s), not {channels} like the rest")
    if meta.level_count < levels:
        raise UserError(f"{path}: {meta.level_count} levels, fewer than the {levels} asked for")


def fits_vocab(meta: CodesMeta, vocab: Vocab | PresetVocab, path: str) -> None:
    """Refuse codes that cannot join `vocab`'s documents."""
    channels = vocab.channels if isinstance(vocab, PresetVocab) else None
    fits(meta, vocab.codes_meta, vocab.level_count, path, channels)


@dataclass
class Plan:
    kind: str                 # "tokenize" or "export"
    options: TokenOptions
    vocab: Vocab | PresetVocab
    files: list[dict]         # the good ones: path, id, text, metadata, frames, tokens
    bad: list[dict]           # files refused from their header: path, id, reason
    shards: list[dict]        # index, first, count, tokens (ranges over `files`)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": VERSION, "kind": self.kind, "options": self.options.to_dict(),
                "vocab": self.vocab.to_dict(), "shards": self.shards, "files": self.files, "bad": self.bad}

    @cached_property
    def sha256(self) -> str:  # a plan is not changed once made
        return plan_hash(self.to_dict())

    @property
    def seconds(self) -> float:
        return sum(f["frames"] for f in self.files) / float(self.vocab.codes_meta["frame_rate"])


def make_plan(kind: str, sources: list[Source], options: TokenOptions, template: CodesMeta | None = None,
              codec=None, preset: "Preset | None" = None) -> Plan:
    """kind "tokenize" (audio, needs `codec`) or "export" (code files; the first readable one sets
    the model). `preset`: the options' preset already loaded (`TokenOptions.load_preset`)."""
    options.check()
    if options.preset is not None and preset is None:
        preset = options.load_preset()
    vocab = vocab_for(template, options, preset, codec) if template is not None else None   # refusals before any work
    headers = list(zip(sources, read_headers(kind, sources, codec)))
    if vocab is None:                   # code files: the first readable one sets the model
        template = next((h[0] for _, h in headers if not isinstance(h, Failure)), None)
        if template is None:
            raise UserError("no input could be read: " + "; ".join(h.reason for _, h in headers[:3]))
        vocab = vocab_for(template, options, preset)
    files, bad = [], []
    for src, header in headers:
        try:
            files.append(plan_file(src, header, vocab))
        except UserError as exc:
            bad.append({"path": src.path, "id": src.id, "reason": str(exc)})
    plan_shards: list[dict] = []
    for i, f in enumerate(files):
        last = plan_shards[-1] if plan_shards else None
        if last is None or last["tokens"] + f["tokens"] > options.shard_tokens and last["count"]:
            last = {"index": len(plan_shards), "first": i, "count": 0, "tokens": 0}
            plan_shards.append(last)
        last["count"] += 1
        last["tokens"] += f["tokens"]
    return Plan(kind, options, vocab, files, bad, plan_shards)


def plan_file(src: Source, header: tuple[CodesMeta | None, int] | Failure, vocab: Vocab | PresetVocab) -> dict:
    """The plan's entry of one source (path, id, text, metadata, frames, tokens), or a UserError
    saying why it cannot be used."""
    if isinstance(header, Failure):
        raise UserError(header.reason)
    meta, frames = header
    if meta is not None:
        fits_vocab(meta, vocab, src.path)
    file = {**src.to_dict(), "frames": frames}
    return {**file, "tokens": vocab.file_length(file)}


def vocab_for(template: CodesMeta, options: TokenOptions, preset: "Preset | None", codec=None) -> Vocab | PresetVocab:
    """The vocabulary of codes like `template`'s under `options` (`--n-q` counts levels; `codec`,
    when it makes them, says their rows), or why they cannot have one."""
    if getattr(template, "segment_length", 0):
        # per-segment scales (EnCodec 48 kHz) are not carried per document in token shards yet
        raise UserError(f"model '{template.model}' codes audio in normalised segments, whose scales "
                        "token shards do not carry yet: use rvq encode for this model")
    if preset is not None:
        return PresetVocab.for_codes(template, preset, options.n_q)
    levels = template.level_count
    n_q = options.n_q or levels
    if not 1 <= n_q <= levels:
        raise UsageError(f"--n-q must be between 1 and {levels}, got {n_q}")
    rows = codec.rows(n_q) if codec is not None else None
    return Vocab.for_codes(template, options.pattern, n_q, rows, offset=options.vocab_offset,
                           bos=options.bos, eos=options.eos, sep=options.sep)


def template_for(codec) -> CodesMeta:
    """The metadata this codec writes (read off a one-frame encode, so new fields come along)."""
    return codec.encode_blocks([np.zeros((1, codec.hop_length), np.float32)], None, "mono", codec.sample_rate).meta


def plan_hash(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
