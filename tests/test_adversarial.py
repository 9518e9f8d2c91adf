"""Adversarial training: discriminator shapes, loss values, balancer shares, and resumable runs."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rvqtool.train.adversarial_losses import discriminator_loss, feature_matching_loss, generator_loss
from rvqtool.train.adversary import Adversary
from rvqtool.train.balancer import LossBalancer
from rvqtool.train.discriminator import DiscriminatorConfig, Discriminator
from rvqtool.train.trainer import train
from tests.test_train import TINY, corpus, options  # noqa: F401  (corpus is a fixture)

SMALL = DiscriminatorConfig(windows=(256, 64), filters=4)


@pytest.mark.parametrize("length", [640, 2401, 4800])
def test_discriminator_shapes(length):
    wav = torch.randn(3, 1, length)
    out = Discriminator(SMALL)(wav)
    assert len(out) == 2
    for window, (logits, features) in zip(SMALL.windows, out):
        frames, bins = length // (window // 4) + 1, window // 2 + 1
        for _ in SMALL.dilations:        # each dilated conv halves the frequency axis (rounding up)
            bins = (bins + 1) // 2
        assert logits.shape == (3, 1, frames, bins)
        assert len(features) == len(SMALL.dilations) + 2
        assert features[0].shape == (3, SMALL.filters, frames, window // 2 + 1)
        assert features[-1].shape == (3, SMALL.filters, frames, bins)


def judged(*logits, features=None):
    """A discriminator output with the given logits per scale (and feature maps, or none)."""
    return [(torch.as_tensor(l, dtype=torch.float32), features[i] if features else []) for i, l in enumerate(logits)]


def test_hinge_losses_on_known_logits():
    assert discriminator_loss(judged([1.5, 1.0]), judged([-1.0, -3.0])) == 0       # both past their margins
    assert discriminator_loss(judged([0.0], [0.0]), judged([0.0], [0.0])) == 2     # undecided: 1 + 1
    assert discriminator_loss(judged([0.5]), judged([0.0])) == pytest.approx(1.5)
    assert generator_loss(judged([1.0, 2.0])) == 0
    assert generator_loss(judged([0.0], [-1.0])) == pytest.approx(1.5)          # mean over scales of 1 and 2
    fake = torch.zeros(4, requires_grad=True)
    generator_loss([(fake, [])]).backward()
    assert (fake.grad < 0).all()        # descending the codec's loss raises the fake logits


def test_feature_matching_is_relative_per_layer():
    real = [[torch.full((2, 3), 1.0), torch.full((2, 5), 100.0)]]
    same = judged([0.0], features=real)
    assert feature_matching_loss(same, same) == 0
    doubled = judged([0.0], features=[[2 * f for f in real[0]]])
    assert feature_matching_loss(same, doubled) == pytest.approx(1.0)   # each layer off by its own size
    fake = [[f.clone().requires_grad_(True) for f in real[0]]]
    feature_matching_loss(judged([0.0], features=[[f + 1 for f in real[0]]]), judged([0.0], features=fake)).backward()
    assert all((f.grad < 0).all() for f in fake[0])   # descending it raises fakes towards the larger real maps


def test_balancer_gives_each_loss_its_share_of_the_gradient():
    output = torch.randn(2, 1, 200, requires_grad=True)
    # two losses 10^6 apart in gradient size, on disjoint halves so each part can be measured alone
    losses = {"big": 1e3 * output[..., :100].abs().mean(), "small": 1e-3 * output[..., 100:].pow(2).mean()}
    balancer = LossBalancer({"big": 1.0, "small": 3.0, "absent": 2.0}, decay=0.0, total_norm=2.0)
    grad, norms = balancer.gradient(losses, output)
    assert norms["big"] > 1e5 * norms["small"]
    measured = {"big": grad[..., :100].flatten(1).norm(dim=1).mean(), "small": grad[..., 100:].flatten(1).norm(dim=1).mean()}
    assert measured["big"] == pytest.approx(2.0 * 1 / 4, rel=1e-5)   # shares renormalised over the losses given
    assert measured["small"] == pytest.approx(2.0 * 3 / 4, rel=1e-5)


def test_balancer_averages_norms_and_restores_them():
    output = torch.ones(1, 10, requires_grad=True)
    balancer = LossBalancer({"a": 1.0}, decay=0.5)
    balancer.gradient({"a": output.sum()}, output)
    grad, _ = balancer.gradient({"a": 4 * output.sum()}, output)
    # running norm: (0.5·√10 + 4√10) / (0.5 + 1) = 3√10, so the gradient 4·1 is scaled by 1/(3√10)
    assert grad.norm() == pytest.approx(4 / 3, rel=1e-6)
    again = LossBalancer({"a": 1.0, "b": 1.0}, decay=0.5)
    again.load_state_tensors(balancer.state_tensors())
    assert again.averages["a"] == balancer.averages["a"] and again.averages["b"] == [0.0, 0.0]


def adversarial(steps: int, **changes):
    base = dict(adversarial=True, adversarial_from_step=2, discriminator_warmup=1, discriminator_filters=4,
                discriminator_windows=(256, 64), balance=True)
    return dataclasses.replace(options(steps), **{**base, **changes})


def states_equal(a, b):
    a, b = load_file(a / "train_state.safetensors"), load_file(b / "train_state.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    return a


def test_adversarial_run_trains_the_discriminator_and_resumes_exactly(corpus, tmp_path):
    train([corpus], tmp_path / "a", TINY, adversarial(6))
    train([corpus], tmp_path / "b", TINY, adversarial(4))
    train([corpus], tmp_path / "b", TINY, adversarial(6), resume=True)
    state = states_equal(tmp_path / "a", tmp_path / "b")
    fresh = Adversary(SMALL, 3e-4, 1, "cpu").state_tensors()   # seed + 1, as the trainer seeds it
    assert fresh.keys() <= state.keys() and any(k.startswith("disc_optim.") for k in state)
    assert not all(torch.equal(v, state[k]) for k, v in fresh.items())
    assert {"balancer.mel", "balancer.adversarial"} <= state.keys()
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert ["discriminator" in r for r in log] == [False, False, True, True, True, True]
    assert ["adversarial" in r and "feature" in r for r in log] == [False, False, False, True, True, True]
    assert set(log[-1]["grad_norms"]) == {"mel", "stft", "waveform", "adversarial", "feature"}
    meta = json.loads((tmp_path / "a" / "train_state.json").read_text())
    assert DiscriminatorConfig.from_dict(meta["discriminator"]) == SMALL


def test_unreached_adversarial_stage_changes_nothing(corpus, tmp_path):
    """Building a discriminator must not disturb the codec's random draws: until it starts, the run is
    the plain run, bit for bit."""
    train([corpus], tmp_path / "plain", TINY, options(4))
    train([corpus], tmp_path / "adv", TINY, adversarial(4, adversarial_from_step=100, balance=False))
    plain = load_file(tmp_path / "plain" / "train_state.safetensors")
    adv = load_file(tmp_path / "adv" / "train_state.safetensors")
    assert {k for k in adv if not k.startswith(("disc.", "disc_optim."))} == plain.keys()
    for key in plain:
        assert torch.equal(plain[key], adv[key]), key


def test_old_state_resumes_with_and_without_a_discriminator(corpus, tmp_path):
    train([corpus], tmp_path, TINY, options(3))                      # a state from before adversarial training
    train([corpus], tmp_path, TINY, adversarial(6, adversarial_from_step=0, discriminator_warmup=1), resume=True)
    with_disc = load_file(tmp_path / "train_state.safetensors")
    assert any(k.startswith("disc.") for k in with_disc)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    # a fresh discriminator starts at the resumed step and warms up from there
    assert ["discriminator" in r for r in log] == [False] * 3 + [True] * 3
    assert ["adversarial" in r for r in log] == [False] * 4 + [True] * 2
    assert json.loads((tmp_path / "train_state.json").read_text())["discriminator"]["start_step"] == 3
    # resumed without --adversarial, the discriminator's state is kept untouched for later
    train([corpus], tmp_path, TINY, options(7), resume=True)
    after = load_file(tmp_path / "train_state.safetensors")
    for key in (k for k in with_disc if k.startswith(("disc.", "disc_optim.", "balancer."))):
        assert torch.equal(after[key], with_disc[key]), key
    assert "discriminator" in json.loads((tmp_path / "train_state.json").read_text())


def test_cli_adversarial_options(corpus, tmp_path):
    cmd = [sys.executable, "-m", "rvqtool.cli", "train", str(corpus), "-o", str(tmp_path), "--steps", "3",
           "--batch-size", "2", "--crop-seconds", "0.1", "--quantizer-warmup", "1", "--encoder-filters", "2",
           "--decoder-filters", "2", "--dimension", "8", "--n-quantizers", "2", "--codebook-size", "16",
           "--threads", "1", "--adversarial", "--adversarial-from-step", "1", "--discriminator-filters", "2",
           "--balance", "--balance-norm", "50", "--weight-waveform", "0.1", "--weight-feature", "3", "--checkpoint-every", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "train_state.json").read_text())
    assert meta["discriminator"]["filters"] == 2 and meta["options"]["balance"] and meta["options"]["weight_feature"] == 3
    assert meta["options"]["balance_norm"] == 50


@pytest.mark.parametrize("period", [2, 3, 5])
def test_period_discriminator_judges_folded_samples(period):
    """Each period judge sees the waveform folded into [T / p, p] and never mixes columns: changing the
    samples of one phase changes only that column of its first feature map."""
    config = dataclasses.replace(SMALL, periods=(period,))
    judge = Discriminator(config).periods[0]
    wav = torch.randn(2, 1, 4800)
    logits, features = judge(wav)
    assert len(features) == 5 and logits.shape[-1] == period
    changed = wav.clone()
    changed[..., 0::period] += 1.0
    delta = (judge(changed)[1][0] - features[0]).abs().sum(dim=(0, 1, 2))
    assert delta[0] > 0 and torch.all(delta[1:] == 0)
    assert len(Discriminator(config)(wav)) == len(SMALL.windows) + 1


def test_periods_are_kept_in_the_state_and_old_configs_read_without_them(corpus, tmp_path):
    train([corpus], tmp_path, TINY, adversarial(3, discriminator_periods=(2, 3)))
    meta = json.loads((tmp_path / "train_state.json").read_text())
    assert DiscriminatorConfig.from_dict(meta["discriminator"]).periods == (2, 3)
    assert any(k.startswith("disc.periods.1.") for k in load_file(tmp_path / "train_state.safetensors"))
    old = {k: v for k, v in meta["discriminator"].items() if k not in ("periods", "start_step")}
    assert DiscriminatorConfig.from_dict(old) == SMALL


def test_time_limit_stops_with_a_checkpoint_and_a_model(corpus, tmp_path):
    """Out of time, the run writes its state and model at the step it reached, and resumes from it."""
    train([corpus], tmp_path, TINY, dataclasses.replace(options(1000), time_limit_seconds=1e-9, checkpoint_every=500))
    meta = json.loads((tmp_path / "train_state.json").read_text())
    assert meta["step"] == 1 and (tmp_path / "model.safetensors").exists()
    train([corpus], tmp_path, TINY, options(3), resume=True)
    assert json.loads((tmp_path / "train_state.json").read_text())["step"] == 3


def test_bf16_autocast_trains_with_float32_codebooks(corpus, tmp_path):
    """The GPU recipe's precision on the CPU: the codec learns, its quantizer buffers stay float32,
    and a bf16 step differs from a float32 one (autocast really applied)."""
    train([corpus], tmp_path / "bf16", TINY, adversarial(4, precision="bf16"))
    train([corpus], tmp_path / "fp32", TINY, adversarial(4))
    bf16, fp32 = (load_file(tmp_path / run / "train_state.safetensors") for run in ("bf16", "fp32"))
    assert bf16["model.quantizer.embed"].dtype == torch.float32
    assert all(torch.isfinite(v).all() for v in bf16.values() if v.is_floating_point())
    assert any(not torch.equal(bf16[k], fp32[k]) for k in fp32 if k.startswith("model.decoder."))
