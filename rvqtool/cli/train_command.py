"""`rvq train`: train a whole codec on a corpus."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from rvqtool.cli.app import DEVICE, VERBOSE, ProgressBar, app, err
from rvqtool.errors import UsageError


@app.command()
def train(
    sources: List[Path] = typer.Argument(..., metavar="SOURCES", help="Audio files, directories, globs, manifests or - (paths on stdin); README: Inputs."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, train_log.jsonl and NAME.safetensors."),
    name: str = typer.Option("model", "--name", help="Name of the model file written into --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    init_from: Optional[str] = typer.Option(None, "--init-from", metavar="MODEL", help="Start a new run from a model's weights, config and step count (a shipped name such as default-v2, or a model file): how a machine without training state continues a model."),
    steps: int = typer.Option(10000, "--steps", min=1, help="Train until this many steps in total."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    crop_seconds: float = typer.Option(0.8, "--crop-seconds", help="Length of the random training crops."),
    lr: float = typer.Option(5e-4, "--lr", min=0.0, help="Peak learning rate (AdamW), after warm-up; decays exponentially."),
    lr_decay: float = typer.Option(0.99985, "--lr-decay", min=0.0, max=1.0, help="Factor the learning rate is multiplied by each step."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1),
    quantizer_warmup: int = typer.Option(300, "--quantizer-warmup", min=0, help="Steps trained unquantised before k-means fits the codebooks."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: all cores)."),
    half_weights: bool = typer.Option(False, "--half-weights", help="Store the model file in float16 (half the size)."),
    device: str = DEVICE,
    sample_rate: int = typer.Option(24000, "--sample-rate", min=1),
    ratios: str = typer.Option("8,5,4,2", "--ratios", help="Up-sampling ratios; their product is the hop length."),
    encoder_filters: int = typer.Option(16, "--encoder-filters", min=1),
    decoder: Optional[str] = typer.Option(None, "--decoder", metavar="seanet|istft", help="seanet (transposed convs; the default) or istft (ConvNeXt blocks + inverse STFT, Vocos-style: phase is an output; a fraction of the arithmetic). With --init-from, a new decoder of this kind replaces the model's (trained from step 0; add --decoder-only to keep its codes)."),
    decoder_filters: Optional[int] = typer.Option(None, "--decoder-filters", min=1, help="seanet: base filters (default 32); istft: the blocks' width (default 384)."),
    decoder_layers: int = typer.Option(8, "--decoder-layers", min=1, help="istft: number of ConvNeXt blocks."),
    dimension: int = typer.Option(128, "--dimension", min=1, help="Latent (codebook vector) dimension."),
    n_quantizers: int = typer.Option(8, "--n-quantizers", min=1),
    codebook_size: int = typer.Option(1024, "--codebook-size", min=1, max=32768),
    lstm_layers: int = typer.Option(0, "--lstm-layers", min=0, help="EnCodec-style LSTM layers (0: none; >0 makes chunked codes inexact)."),
    causal: bool = typer.Option(False, "--causal", help="Causal convolutions (streamable)."),
    quantizer_dropout: float = typer.Option(0.5, "--quantizer-dropout", min=0.0, max=1.0, help="Share of steps trained with a random number of levels."),
    weight_mel: float = typer.Option(1.0, "--weight-mel", min=0.0, help="Weight of the multi-scale mel loss (a gradient share with --balance)."),
    weight_stft: float = typer.Option(1.0, "--weight-stft", min=0.0, help="Weight of the multi-scale STFT loss."),
    weight_waveform: float = typer.Option(5.0, "--weight-waveform", min=0.0, help="Weight of the L1 loss on samples."),
    weight_commitment: float = typer.Option(1.0, "--weight-commitment", min=0.0, help="Weight of the VQ commitment loss (never balanced)."),
    adversarial: bool = typer.Option(False, "--adversarial", help="Train against a multi-scale STFT discriminator (adversarial + feature-matching losses)."),
    adversarial_from_step: int = typer.Option(0, "--adversarial-from-step", help="Step at which the discriminator starts training (a run resumed later with --adversarial starts it at once)."),
    discriminator_warmup: int = typer.Option(0, "--discriminator-warmup", help="Steps the discriminator trains alone, from its start, before its losses reach the codec."),
    discriminator_filters: int = typer.Option(16, "--discriminator-filters", min=1, help="Channels of the discriminator's convolutions (fixed once a run has one)."),
    discriminator_lr: float = typer.Option(3e-4, "--discriminator-lr", min=0.0, help="Learning rate of the discriminator (AdamW, constant)."),
    discriminator_periods: str = typer.Option("", "--discriminator-periods", metavar="P,P,...", help="Add multi-period discriminators (HiFi-GAN's 2,3,5,7,11) beside the STFT scales (fixed once a run has a discriminator)."),
    weight_adversarial: float = typer.Option(1.0, "--weight-adversarial", min=0.0, help="Weight of the adversarial (hinge) loss."),
    weight_feature: float = typer.Option(2.0, "--weight-feature", min=0.0, help="Weight of the feature-matching loss."),
    balance: bool = typer.Option(False, "--balance", help="Loss balancer: the weights of mel, stft, waveform, adversarial and feature become shares of the gradient at the decoder output. Use it with --adversarial: at plain weights the adversarial gradients are 10^4-10^7 times smaller than the STFT loss's."),
    balance_norm: float = typer.Option(100.0, "--balance-norm", min=0.0, help="Norm of the balanced gradient per example; it also sets how much the reconstruction outweighs the (unbalanced) commitment loss in the encoder. Keep it near a plain run's gradient size (about 100 for the default model's losses; with --balance, train_log.jsonl logs each loss's raw grad_norms) so that Adam's moments still fit when a plain run switches over."),
    time_limit: float = typer.Option(0.0, "--time-limit", min=0.0, metavar="MINUTES", help="Stop after this much wall-clock time, writing the checkpoint and model first (0: no limit)."),
    decoder_only: bool = typer.Option(False, "--decoder-only", help="Train the decoder alone (with --init-from): encoder and codebooks stay frozen, so codes stay the starting model's and corpora tokenized with it stay valid."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or bf16: encoder, decoder and discriminator under bfloat16 autocast (for GPUs; quantizer and losses stay float32)."),
    verbose: bool = VERBOSE,
) -> None:
    """Train a codec on a corpus (CPU or CUDA); resumable.

    \b
    Examples:
      rvq train corpus/ -o runs/speech --steps 20000
      rvq train corpus/ -o runs/speech --steps 40000 --resume
      rvq train corpus/ -o runs/speech --steps 60000 --resume --adversarial --discriminator-warmup 500
      rvq train corpus/ -o runs/more --init-from default-v2 --steps 20000
      rvq train corpus/ -o runs/dec --init-from default-v2 --steps 20000 --decoder-only --adversarial
      rvq train corpus/ -o runs/istft --init-from default-v2 --decoder istft --decoder-only --steps 12000
      rvq train corpus/ -o runs/gpu --init-from default-v2 --steps 90000 --device cuda --precision bf16 --time-limit 8
      rvq encode x.wav -o x.npy --model runs/speech/model
    """
    from rvqtool.codec import resolve_device
    from rvqtool.registry import model_path
    from rvqtool.config import CodecConfig
    from rvqtool.model.native import DECODERS, DEFAULT_DECODER_FILTERS
    from rvqtool.train.trainer import TrainOptions, train as run_training

    if balance and not (weight_mel or weight_stft or weight_waveform):  # the only ones there before the discriminator
        raise UsageError("--balance needs a loss to balance: give --weight-mel, --weight-stft or --weight-waveform above 0")
    if balance and not balance_norm:
        raise UsageError("--balance-norm must be above 0")
    if not crop_seconds > 0:
        raise UsageError(f"--crop-seconds must be above 0, got {crop_seconds}")
    if precision not in ("fp32", "bf16"):
        raise UsageError(f"--precision must be fp32 or bf16, got {precision!r}")
    try:
        periods = tuple(int(p) for p in discriminator_periods.split(",")) if discriminator_periods else ()
    except ValueError:
        raise UsageError(f"--discriminator-periods must be comma-separated integers, got {discriminator_periods!r}")
    if periods and min(periods) < 2:
        raise UsageError(f"--discriminator-periods must be integers of 2 or more, got {discriminator_periods!r}")
    try:
        ratio_list = tuple(int(r) for r in ratios.split(","))
    except ValueError:
        raise UsageError(f"--ratios must be comma-separated integers, got {ratios!r}")
    if min(ratio_list) < 1:
        raise UsageError(f"--ratios must be integers of 1 or more, got {ratios!r}")
    if decoder not in (None, *DECODERS):
        raise UsageError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "istft" and causal:
        raise UsageError("--decoder istft is non-causal: drop --causal, or use --decoder seanet")
    decoder_fields = {"decoder": decoder or "seanet", "decoder_layers": decoder_layers,
                      "decoder_filters": decoder_filters or DEFAULT_DECODER_FILTERS[decoder or "seanet"]}
    config = CodecConfig(sample_rate=sample_rate, ratios=ratio_list, encoder_filters=encoder_filters,
                         dimension=dimension, n_quantizers=n_quantizers, **decoder_fields,
                         codebook_size=codebook_size, lstm_layers=lstm_layers, causal=causal,
                         quantizer_dropout=quantizer_dropout)
    options = TrainOptions(steps=steps, batch_size=batch_size, crop_seconds=crop_seconds, learning_rate=lr, lr_decay=lr_decay,
                           checkpoint_every=checkpoint_every, quantizer_warmup=quantizer_warmup, seed=seed, threads=threads,
                           half_weights=half_weights, weight_mel=weight_mel, weight_stft=weight_stft,
                           weight_waveform=weight_waveform, weight_commitment=weight_commitment, adversarial=adversarial,
                           adversarial_from_step=adversarial_from_step, discriminator_warmup=discriminator_warmup,
                           discriminator_filters=discriminator_filters, discriminator_lr=discriminator_lr,
                           weight_adversarial=weight_adversarial, weight_feature=weight_feature, balance=balance,
                           balance_norm=balance_norm, discriminator_periods=periods,
                           time_limit_seconds=time_limit * 60, precision=precision,
                           decoder_only=decoder_only)
    bar = ProgressBar("train", steps, verbose, status=True, keep=True)

    def report(step: int, total: int, record: dict) -> None:
        status = f"loss {record['loss']:.3f} mel {record['mel']:.3f}"
        if "adversarial" in record:
            status += f" adv {record['adversarial']:.3f} feat {record['feature']:.3f} disc {record['discriminator']:.3f}"
        bar.update(step, status)
        if verbose and not bar.shown:
            err.print(f"step {step}/{total} {status}", markup=False)

    with bar:
        path = run_training(sources, out, config, options, str(resolve_device(device)), resume, name, report,
                            init_from=model_path(init_from) if init_from else None,
                            new_decoder=decoder_fields if init_from and decoder else None)
    err.print(f"model written to {path}", markup=False)
