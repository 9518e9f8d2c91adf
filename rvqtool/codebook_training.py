"""Fit new residual-VQ codebooks to a corpus, without retraining the network.

The features are a frozen encoder's latents for some audio (or any [N, D] array). Level by level,
k-means (k-means++ seeds, Lloyd iterations on `rvqtool.kernels`, empty clusters re-seeded from
the worst-served points) fits the residual that the levels before it left; optional EMA passes
then refine all levels together on mini-batches, restarting codes that fall out of use. The
level count and codebook size are free, so the same encoder and decoder can get a coarser or
finer tokenizer than the one they were trained with.

A model-based run writes a full model (weights + JSON, new name and hash) that every command
takes with --model; a features run writes the codebooks alone ([L, K, D] in safetensors), which
`kernels.rvq_encode` takes as they are.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rvqtool import kernels
from rvqtool.checkpoint import save_model
from rvqtool.codec import Codec
from rvqtool.errors import UsageError, UserError
from rvqtool.evaluation.inputs import resolve
from rvqtool.evaluation.usage import CodeUsage
from rvqtool.io.atomic import atomic_path
from rvqtool.io.audio import open_audio
from rvqtool.model.native import NativeCodecModel
from rvqtool.model.kmeans import kmeans
from rvqtool.model.quantizer import ResidualVQ

CODEBOOKS_KEY = "codebooks"


@dataclass(frozen=True)
class CodebookOptions:
    n_q: int = 8
    codebook_size: int = 1024
    iterations: int = 20            # Lloyd iterations per level
    ema_passes: int = 0             # passes of EMA refinement over the features, all levels together
    batch_vectors: int = 4096       # vectors per EMA mini-batch
    max_vectors: int | None = None  # sample at most this many (None: 256 per code, as faiss does)
    dead_code_threshold: float = 0.01  # EMA passes restart codes used less than this share of a uniform one
    seed: int = 0

    def check(self) -> None:
        for name in ("n_q", "codebook_size", "iterations", "batch_vectors"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.ema_passes < 0:
            raise UsageError(f"--ema-passes must be 0 or more, got {self.ema_passes}")
        if self.codebook_size > 32768:
            raise UsageError(f"--codebook-size must be at most 32768 (codes are stored as int16), got {self.codebook_size}")
        if self.max_vectors is not None and self.max_vectors < self.codebook_size:
            raise UsageError(f"--max-vectors ({self.max_vectors}) must be at least --codebook-size ({self.codebook_size})")


@dataclass
class LevelReport:
    level: int
    distortion: float        # mean squared residual after this level, over all features
    relative: float          # that, over the features' mean squared norm
    perplexity: float
    share_used: float
    reseeded: int            # empty clusters re-seeded during Lloyd iterations


# ---- features ----------------------------------------------------------------------------------
def sample(features: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most `limit` rows, drawn without replacement (all rows, in order, when there are fewer)."""
    if len(features) <= limit:
        return features
    picks = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:limit]
    return features[picks.sort().values]


def load_features(path: Path) -> torch.Tensor:
    """A float [N, D] .npy file (no pickles) as float32."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable .npy array ({exc})")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0 or not np.issubdtype(array.dtype, np.number):
        raise UserError(f"{path}: features must be a numeric [N, D] array, got {array.dtype} {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise UserError(f"{path}: features hold NaN or infinite values")
    return torch.from_numpy(array)


def encoder_features(codec: Codec, inputs: list[str], on_file: Callable[[str], None] = lambda name: None) -> torch.Tensor:
    """The frozen encoder's latents [frames, D] for every audio file in `inputs` (files,
    directories, manifests), read mono: the latents `rvq encode` quantises, window for window
    (`Codec.latent_windows`), so the codebooks are fitted to what they will code."""
    pieces = []
    for item in resolve(inputs):
        _, blocks = open_audio(item.path, codec.sample_rate, mono=True)
        for latent, _ in codec.latent_windows(blocks):
            pieces.append(latent[0].T.float().cpu())
        on_file(item.name)
    return torch.cat(pieces)


# ---- fitting -----------------------------------------------------------------------------------
def _ema_refine(codebooks: torch.Tensor, features: torch.Tensor, options: CodebookOptions) -> torch.Tensor:
    """EMA passes over shuffled mini-batches, all levels at once, by the training quantizer's own
    update (decay 0.99, dead codes restarted on vectors of the batch). The restart threshold is
    lower than in training: k-means leaves skewed but useful cluster sizes, and restarting the
    small ones (as training's 10 % of a uniform share would) costs more than it brings."""
    levels, size, dim = codebooks.shape
    rvq = ResidualVQ(levels, size, dim, dead_code_threshold=options.dead_code_threshold).train()
    counts = CodeUsage.empty(levels, size)
    counts.add(kernels.rvq_encode(features, codebooks).numpy()[None])
    scale = min(options.batch_vectors, len(features)) / len(features)
    rvq.embed.copy_(codebooks)
    rvq.cluster_size.copy_(torch.from_numpy(counts.counts).float() * scale)
    rvq.embed_avg.copy_(codebooks * rvq.cluster_size[..., None])
    rvq.initialized.fill_(True)
    generator = torch.Generator().manual_seed(options.seed + 1)
    with torch.no_grad():
        for _ in range(options.ema_passes):
            order = torch.randperm(len(features), generator=generator)
            for start in range(0, len(features), options.batch_vectors):
                batch = features[order[start:start + options.batch_vectors]]
                rvq(batch.T[None], levels)
    return rvq.embed.clone()


def level_reports(codebooks: torch.Tensor, features: torch.Tensor, reseeded: list[int]) -> list[LevelReport]:
    """Distortion and code usage of each level on `features`."""
    codes = kernels.rvq_encode(features, codebooks)
    usage = CodeUsage.empty(*codebooks.shape[:2])
    usage.add(codes.numpy()[None])
    energy = float((features ** 2).sum(dim=1).mean())
    residual, reports = features.clone(), []
    for level in range(len(codebooks)):
        residual -= codebooks[level][codes[level]]
        distortion = float((residual ** 2).sum(dim=1).mean())
        reports.append(LevelReport(level + 1, distortion, distortion / max(energy, 1e-12),
                                   usage.perplexity()[level], usage.share_used()[level], reseeded[level]))
    return reports


def vectors_used(available: int, options: CodebookOptions) -> int:
    """How many of `available` feature vectors a run fits on."""
    return min(available, options.max_vectors or 256 * options.codebook_size)


def train_codebooks(features: torch.Tensor, options: CodebookOptions,
                    on_level: Callable[[int, list[dict]], None] = lambda level, history: None
                    ) -> tuple[torch.Tensor, list[LevelReport]]:
    """Codebooks [n_q, codebook_size, D] fitted to `features` [N, D], and a report per level."""
    options.check()
    features = features.float().contiguous()
    if len(features) < options.codebook_size:
        raise UserError(f"{len(features)} feature vectors cannot fill {options.codebook_size} codes: "
                        "give more audio, or a smaller --codebook-size")
    available = len(features)
    features = sample(features, vectors_used(available, options), options.seed)
    residual = features.clone()
    codebooks, reseeded = [], []
    for level in range(options.n_q):
        if level:
            _check_fillable(residual, level, available, options)
        history: list[dict] = []
        centroids, _ = kmeans(residual, options.codebook_size, options.iterations, options.seed + level, history)
        residual -= centroids[kernels.nearest(residual, centroids)]
        codebooks.append(centroids)
        reseeded.append(sum(h["reseeded"] for h in history))
        on_level(level + 1, history)
    stacked = torch.stack(codebooks)
    if options.ema_passes:
        stacked = _ema_refine(stacked, features, options)
    return stacked, level_reports(stacked, features, reseeded)


def _check_fillable(residual: torch.Tensor, level: int, available: int, options: CodebookOptions) -> None:
    """Refuse before fitting level `level + 1` when the levels before it left fewer distinct
    residuals than it has codes: they have memorised the features, and every later level would
    come out empty (0 % used, distortion 0) -- a model that looks trained and is not."""
    distinct = _distinct_rows(residual)
    if distinct >= options.codebook_size:
        return
    sampled = " a larger --max-vectors," if len(residual) < available else ""
    raise UserError(f"{len(residual):,} feature vectors are too few for {options.n_q} levels of "
                    f"{options.codebook_size} codes: after level {level} only {distinct:,} distinct residuals are "
                    f"left for the {options.codebook_size} codes of level {level + 1}: pass more audio,{sampled} "
                    f"a smaller --codebook-size, or --n-q {level}")


def _distinct_rows(x: torch.Tensor) -> int:
    """How many distinct rows x [N, D] has, counted on one random projection in float64 (distinct
    rows project apart with probability 1): a sort of N numbers rather than of N rows."""
    direction = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return len(torch.unique(x.double() @ direction.to(x.device)))


# ---- outputs -----------------------------------------------------------------------------------
def model_with_codebooks(codec: Codec, codebooks: torch.Tensor) -> NativeCodecModel:
    """A copy of the codec's network whose quantizer holds `codebooks` (levels and size may differ)."""
    levels, size, dim = codebooks.shape
    if "architecture" in codec.config.extra:  # EnCodec/DAC: other networks (DAC quantises a projection)
        raise UserError(f"train-codebook writes models of rvqtool's own architecture; '{codec.name}' is "
                        f"{codec.config.extra['architecture']}: pass .npy features instead to get codebooks")
    if dim != codec.config.dimension:
        raise UserError(f"codebooks have dimension {dim}, the model's latents {codec.config.dimension}")
    config = dataclasses.replace(codec.config, n_quantizers=levels, codebook_size=size)
    model = NativeCodecModel(config)
    state = {k: v for k, v in codec.model.state_dict().items() if not k.startswith("quantizer.")}
    model.load_state_dict(state, strict=False)
    model.quantizer.embed.copy_(codebooks)
    model.quantizer.initialized.fill_(True)
    return model.eval()


def save_codebook_model(codec: Codec, codebooks: torch.Tensor, path: Path, name: str, reports: list[LevelReport],
                        vectors: int, half: bool = False) -> Path:
    meta = {"codebook_training": {"encoder_from": {"name": codec.name, "sha256": codec.sha256}, "vectors": vectors,
                                  "levels": [dataclasses.asdict(r) for r in reports],
                                  "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    try:
        return save_model(model_with_codebooks(codec, codebooks), path, name, half=half, extra_meta=meta)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")


def save_codebooks(codebooks: torch.Tensor, path: Path, vectors: int) -> Path:
    """Codebooks alone: one float32 tensor [L, K, D] named "codebooks" in a safetensors file."""
    path = Path(path)
    metadata = {"levels": str(codebooks.shape[0]), "codebook_size": str(codebooks.shape[1]),
                "dimension": str(codebooks.shape[2]), "vectors": str(vectors)}
    try:
        with atomic_path(path) as tmp:
            save_file({CODEBOOKS_KEY: codebooks.float().contiguous()}, str(tmp), metadata=metadata)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})")
    return path


def load_codebooks(path: Path) -> torch.Tensor:
    """The [L, K, D] codebooks `save_codebooks` wrote, ready for `kernels.rvq_encode`."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})")
    if CODEBOOKS_KEY not in tensors or tensors[CODEBOOKS_KEY].ndim != 3:
        raise UserError(f"{path}: no [levels, codebook_size, dim] tensor named '{CODEBOOKS_KEY}'")
    return tensors[CODEBOOKS_KEY]
