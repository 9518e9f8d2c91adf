"""`rvq train`: fit a codec on a corpus, with checkpoints that resume exactly.

Everything needed to resume (weights, EMA codebooks, optimiser moments, RNG state, step, and with
adversarial training the discriminator, its optimiser and the balancer's averages) is written every
`checkpoint_every` steps as one safetensors file, the step and options in its metadata, so that a
kill at any instant leaves one whole checkpoint (a state of an older version, tensors + JSON, still
resumes); nothing is pickled.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from rvqtool.checkpoint import embedded_meta, load_model, read_tensors, save_model, write_tensors
from rvqtool.config import CodecConfig
from rvqtool.errors import UsageError, UserError
from rvqtool.metrics import MultiScaleMelDistance, MultiScaleSTFTDistance
from rvqtool.model.native import NativeCodecModel
from rvqtool.train.adversary import PREFIXES as ADVERSARY_PREFIXES, Adversary
from rvqtool.train.balancer import LossBalancer
from rvqtool.train.data import CropSampler, find_audio
from rvqtool.train.discriminator import DiscriminatorConfig
from rvqtool.train.state_tensors import restore, to_tensors


@dataclass
class TrainOptions:
    steps: int = 10000
    batch_size: int = 8
    crop_seconds: float = 0.8
    learning_rate: float = 5e-4
    lr_decay: float = 0.99985      # per step, after warm-up
    warmup_steps: int = 200
    weight_mel: float = 1.0
    weight_stft: float = 1.0
    weight_waveform: float = 5.0
    weight_commitment: float = 1.0
    init_crops: int = 96           # crops whose latents seed the k-means codebooks
    quantizer_warmup: int = 300    # steps trained without quantisation before k-means init
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    threads: int = 0               # 0: torch's default
    half_weights: bool = False     # store the inference model in float16 (half the file)
    # adversarial training (off: the run is exactly what it was without these options)
    adversarial: bool = False
    adversarial_from_step: int = 0     # the discriminator starts training at this step (or on resume, if later)
    discriminator_warmup: int = 0      # steps it trains alone, from its start, before its losses reach the codec
    discriminator_filters: int = 16
    discriminator_windows: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    discriminator_periods: tuple[int, ...] = ()   # multi-period judges beside the STFT scales
    discriminator_lr: float = 3e-4
    weight_adversarial: float = 1.0
    weight_feature: float = 2.0
    # weights of the losses on the decoder output become shares of its gradient (commitment stays a weight)
    balance: bool = False
    # size of that gradient (per example): about a plain run's for the default model. Commitment is
    # added outside the balancer, and at EnCodec's 1.0 it pulled the encoder towards the codebooks
    # (held-out mel 2.16 -> 2.26 in 150 steps) where 100 tracked the plain run
    balance_norm: float = 100.0
    # stop (checkpoint and model written) once this much wall-clock time has passed (0: no limit):
    # how a lent GPU's fixed minutes are spent without losing the steps of the last minute
    time_limit_seconds: float = 0.0
    # "bf16": encoder, decoder and discriminator under bfloat16 autocast (a GPU's tensor cores); the
    # quantizer and the losses stay float32, so codebook search and EMA updates are exact as before
    precision: str = "fp32"
    # only the decoder learns; encoder and codebooks stay frozen, so the model's codes stay those of
    # the model it started from and token corpora made with that model stay valid for the new one
    decoder_only: bool = False


STATE = "train_state"
BALANCED = ("mel", "stft", "waveform", "adversarial", "feature")


def train(sources: list[Path], out_dir: Path, config: CodecConfig, options: TrainOptions,
          device: str = "cpu", resume: bool = False, name: str = "model",
          progress: Callable[[int, int, dict], None] | None = None, init_from: Path | None = None,
          new_decoder: dict | None = None) -> Path:
    """Train until `options.steps`; returns the inference model path (OUT/NAME.safetensors).

    `init_from` (a model file) starts a new run from its weights, config and recorded step count,
    so that a machine that kept no training state continues from shipped or committed weights.
    `new_decoder` (config fields: decoder, decoder_filters, decoder_layers) replaces its decoder
    with a new, untrained one, and the run counts from step 0 (warm-up and decay start afresh)."""
    out_dir = Path(out_dir)
    start = None
    if init_from is not None:
        if resume:
            raise UsageError("--init-from starts a new run from a model file; --resume continues a run: pass one")
        start, start_meta = load_model(init_from)
        config = start.config if new_decoder is None else dataclasses.replace(start.config, **new_decoder)
    if options.threads:
        torch.set_num_threads(options.threads)
    state_path = out_dir / f"{STATE}.safetensors"
    if resume and state_path.exists():
        config = CodecConfig.from_dict(_state_meta(state_path)["config"])
    elif not resume and state_path.exists():
        raise UserError(f"{out_dir} already holds a training run: pass --resume to continue it, or pick another --out")
    if resume and state_path.exists():
        was = bool(_state_meta(state_path)["options"].get("decoder_only", False))
        if was != options.decoder_only:  # the optimiser holds moments for exactly the parameters that learn
            raise UsageError(f"{out_dir} was trained {'with' if was else 'without'} --decoder-only: "
                             f"resume it {'with' if was else 'without'} it, or start a new run with --init-from")
    files = find_audio(sources)   # refuses sources that name no audio
    sampler = CropSampler(files, config.sample_rate, _crop_samples(config, options.crop_seconds))
    torch.manual_seed(options.seed)  # the weight init, so that a run is reproducible
    model = NativeCodecModel(config).to(device)
    learning = model.decoder if options.decoder_only else model
    optimizer = torch.optim.AdamW(learning.parameters(), lr=options.learning_rate, betas=(0.8, 0.99))
    generator = torch.Generator().manual_seed(options.seed)
    step, saved_tensors, saved_meta = 0, {}, {}
    if start is not None:
        step = _start_from(model, start, start_meta, sampler, options, generator, device, new_decoder is not None)
    if resume and state_path.exists():
        step, saved_tensors, saved_meta = _load_state(state_path, model, optimizer, generator)
    if not model.quantizer.initialized and options.steps <= options.quantizer_warmup:  # k-means would never run
        raise UsageError(f"--steps {options.steps} ends before the quantizer warm-up ({options.quantizer_warmup} steps), "
                         "so the model would have unfitted codebooks: pass --steps above "
                         f"{options.quantizer_warmup}, or --quantizer-warmup below {options.steps}")
    if options.decoder_only and not model.quantizer.initialized:
        raise UsageError("--decoder-only keeps the encoder and codebooks as they are, so they must be trained: "
                         "pass --init-from MODEL (or --resume a run that has them)")
    adversary = None
    if options.adversarial:
        # a run that already has a discriminator keeps its shape; a new one takes the options'
        disc_config = (DiscriminatorConfig.from_dict(saved_meta["discriminator"]) if "discriminator" in saved_meta
                       else DiscriminatorConfig(tuple(options.discriminator_windows), options.discriminator_filters,
                                                periods=tuple(options.discriminator_periods)))
        adversary = Adversary(disc_config, options.discriminator_lr, options.seed + 1, device)
        # its warm-up counts from when it started: a discriminator added to a resumed run starts now
        if adversary.load_state_tensors(saved_tensors):
            disc_start = int(saved_meta["discriminator"].get("start_step", options.adversarial_from_step))
        else:
            disc_start = max(options.adversarial_from_step, step)
    balancer = None
    if options.balance:
        balancer = LossBalancer({k: getattr(options, f"weight_{k}") for k in BALANCED}, total_norm=options.balance_norm)
        balancer.load_state_tensors(saved_tensors)
    # state this run does not use (a discriminator, a balancer) is kept as it was for a later resume
    carried = {k: v for k, v in saved_tensors.items()
               if (k.startswith(ADVERSARY_PREFIXES) and adversary is None) or (k.startswith("balancer.") and balancer is None)}
    carried_meta = {k: v for k, v in saved_meta.items() if k == "discriminator" and adversary is None}
    del saved_tensors
    mel, stft = MultiScaleMelDistance(config.sample_rate).to(device), MultiScaleSTFTDistance().to(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "train_log.jsonl", "a")
    model.train()
    if options.decoder_only:  # no EMA codebook updates, no dead-code restarts
        model.encoder.eval()
        model.quantizer.eval()
    last_log, seen = time.time(), 0.0

    def write_model() -> None:
        save_model(model, out_dir / f"{name}.safetensors", name, half=options.half_weights,
                   extra_meta={"training": {"steps": step, "corpus_seconds": round(sampler.seconds, 1)}})

    def autocast() -> torch.autocast:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=options.precision == "bf16")

    if step >= options.steps:  # resumed at or past --steps: still write the model asked for (maybe a new --name)
        write_model()
    deadline = time.time() + options.time_limit_seconds if options.time_limit_seconds else None
    while step < options.steps:
        lr = options.learning_rate * min(1.0, (step + 1) / options.warmup_steps) * options.lr_decay ** step
        for group in optimizer.param_groups:
            group["lr"] = lr
        # a random encoder's latents are nearly constant and drift far faster than they spread,
        # so codebooks fitted to them collapse: train unquantised first, then fit k-means
        if step >= options.quantizer_warmup and not model.quantizer.initialized:
            _init_codebooks(model, sampler, options, generator, device)
        wav = sampler.batch(options.batch_size, generator).to(device)
        n_q = config.n_quantizers if step >= options.quantizer_warmup else 0
        if n_q and float(torch.rand((), generator=generator)) < config.quantizer_dropout:
            n_q = int(torch.randint(1, config.n_quantizers + 1, (1,), generator=generator))
        with autocast():
            if options.decoder_only:
                with torch.no_grad():
                    q = model.quantizer(model.encoder(wav), n_q)
                recon = model.decoder(q.quantized)
            else:
                recon, q = model(wav, n_q)
        recon = recon.float()
        losses = {"mel": mel(recon, wav), "stft": stft(recon, wav),
                  "waveform": (recon - wav).abs().mean(), "commitment": q.commitment_loss}
        total = (options.weight_mel * losses["mel"] + options.weight_stft * losses["stft"]
                 + options.weight_waveform * losses["waveform"] + options.weight_commitment * losses["commitment"])
        if adversary is not None and step >= disc_start:
            with autocast():
                losses["discriminator"] = adversary.train_step(wav, recon)
                if step >= disc_start + options.discriminator_warmup:
                    losses.update({k: v.float() for k, v in adversary.codec_losses(wav, recon).items()})
            if "adversarial" in losses:
                total = total + options.weight_adversarial * losses["adversarial"] + options.weight_feature * losses["feature"]
        if not torch.isfinite(total):
            raise UserError(f"loss became {float(total)} at step {step}; lower --lr and --resume")
        optimizer.zero_grad(set_to_none=True)
        grad_norms = None
        if balancer is not None:
            grad, grad_norms = balancer.gradient({k: v for k, v in losses.items() if k in BALANCED}, recon)
            ((recon * grad).sum() + options.weight_commitment * losses["commitment"]).backward()
        else:
            total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1000.0)
        optimizer.step()
        step += 1
        seen += wav.numel() / config.sample_rate
        if step % options.log_every == 0 or step == options.steps:
            now = time.time()
            record = {"step": step, "lr": lr, "n_q": n_q, "loss": float(total.detach()),
                      **{k: float(v.detach()) for k, v in losses.items()},
                      "perplexity": [round(p, 1) for p in q.perplexity],
                      **({"grad_norms": grad_norms} if grad_norms is not None else {}),
                      "audio_seconds_per_second": round(seen / (now - last_log), 2)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            last_log, seen = now, 0.0
            if progress:
                progress(step, options.steps, record)
        out_of_time = deadline is not None and time.time() >= deadline
        if step % options.checkpoint_every == 0 or step == options.steps or out_of_time:
            extra = dict(carried)
            extra_meta = dict(carried_meta)
            if adversary is not None:
                extra.update(adversary.state_tensors())
                extra_meta["discriminator"] = {**adversary.config.to_dict(), "start_step": disc_start}
            if balancer is not None:
                extra.update(balancer.state_tensors())
            _save_state(state_path, model, optimizer, generator, step, options, extra, extra_meta)
            write_model()
        if out_of_time:
            break
    log.close()
    return out_dir / f"{name}.safetensors"


@torch.no_grad()
def _start_from(model: NativeCodecModel, start: NativeCodecModel, meta: dict, sampler: CropSampler, options: TrainOptions,
                generator: torch.Generator, device: str, new_decoder: bool) -> int:
    """Copy `start`'s weights into `model` (all but its decoder's with `new_decoder`); returns the
    step to continue from (0 for a new decoder).

    An inference model keeps no EMA statistics: they are re-estimated from the codes of
    `init_crops` crops (plus one per code, so that codes unseen in that sample are not restarted
    at once), with `embed_avg` set so that the codebooks are exactly the model's at the first step."""
    model.load_state_dict({k: v for k, v in start.state_dict().items()
                           if not (new_decoder and k.startswith("decoder."))}, strict=False)
    quantizer = model.quantizer
    quantizer.initialized.fill_(True)
    counts = torch.ones(quantizer.n_quantizers, quantizer.codebook_size, device=device)
    model.eval()
    for first in range(0, options.init_crops, options.batch_size):
        wav = sampler.batch(min(options.batch_size, options.init_crops - first), generator).to(device)
        codes = quantizer.encode(model.encoder(wav), quantizer.n_quantizers)
        for level in range(quantizer.n_quantizers):
            counts[level] += torch.bincount(codes[:, level].reshape(-1), minlength=quantizer.codebook_size)
    model.train()
    frames = sampler.crop_samples // model.config.hop_length
    quantizer.cluster_size.copy_(counts * (options.batch_size * frames) / (options.init_crops * frames))
    quantizer.embed_avg.copy_(quantizer.embed * quantizer.cluster_size[..., None])
    return 0 if new_decoder else int(meta.get("training", {}).get("steps", 0))


def _crop_samples(config: CodecConfig, seconds: float) -> int:
    return max(1, math.ceil(seconds * config.sample_rate / config.hop_length)) * config.hop_length


@torch.no_grad()
def _init_codebooks(model: NativeCodecModel, sampler: CropSampler, options: TrainOptions,
                    generator: torch.Generator, device: str) -> None:
    latents = []
    for start in range(0, options.init_crops, options.batch_size):
        wav = sampler.batch(min(options.batch_size, options.init_crops - start), generator).to(device)
        z = model.encoder(wav)
        latents.append(z.permute(0, 2, 1).reshape(-1, z.shape[1]))
    frames = sampler.crop_samples // model.config.hop_length
    model.quantizer.init_from_latents(torch.cat(latents).float(), batch_vectors=options.batch_size * frames)


def _save_state(path: Path, model: NativeCodecModel, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                step: int, options: TrainOptions, extra: dict[str, torch.Tensor], extra_meta: dict) -> None:
    tensors = to_tensors(model, optimizer, "model.", "optim.")
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors.update(extra)
    meta = {"step": step, "config": json.loads(model.config.to_json()), "options": dataclasses.asdict(options),
            **extra_meta}
    write_tensors(path, tensors, meta)


def _state_meta(path: Path) -> dict:
    """The step, config and options a state holds (an older version's: in the JSON beside it)."""
    meta = embedded_meta(path)
    return meta if meta is not None else json.loads(path.with_suffix(".json").read_text())


def _load_state(path: Path, model: NativeCodecModel, optimizer: torch.optim.Optimizer,
                generator: torch.Generator) -> tuple[int, dict[str, torch.Tensor], dict]:
    """Restore the codec's side; returns the step, every saved tensor and the JSON (for the rest)."""
    tensors, meta, _ = read_tensors(path)
    meta = meta if meta is not None else _state_meta(path)
    if not restore(tensors, model, optimizer, "model.", "optim."):
        raise UserError(f"{path}: holds no model weights; start the run again without --resume")
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), tensors, meta
