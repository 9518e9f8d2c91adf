"""Average the weights of model files from one training run (checkpoint averaging).

    python examples/average_models.py OUT.safetensors RUN/snap12500/m.safetensors RUN/snap13000/m.safetensors ... [--name default-v3]

Why: late in a run the decoder's output still moves from checkpoint to checkpoint (held-out ViSQOL
on music by +-0.04 between neighbouring 500-step snapshots of trial v3f, a clip's level by up to
3 dB); the mean of several snapshots of the same run sits in the middle of that wander. Only for
snapshots of one run (one basin): every file must have the same config, and weights the run froze
(encoder and codebooks with --decoder-only) come out unchanged, so codes stay the run's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rvqtool.checkpoint import load_model, save_model


def average(paths: list[Path], out: Path, name: str) -> Path:
    """Mean of the float weights of `paths` (integer buffers must agree), written as float16 `out`."""
    models = [load_model(p) for p in paths]
    first, first_meta = models[0]
    if any(m.config != first.config for m, _ in models[1:]):
        raise SystemExit("error: the models' configs differ: average snapshots of one run only")
    states = [m.state_dict() for m, _ in models]
    mean = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mean[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        elif any(not torch.equal(s[key], value) for s in states[1:]):
            raise SystemExit(f"error: {key} differs between the models: average snapshots of one run only")
        else:
            mean[key] = value
    first.load_state_dict(mean)
    steps = [meta.get("training", {}).get("steps") for _, meta in models]
    training = {**first_meta.get("training", {}), "steps": max(s for s in steps if s is not None),
                "averaged_steps": steps}
    return save_model(first, out, name, half=True, extra_meta={"training": training})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--name", default=None, help="the model's name (default: OUT's stem)")
    args = parser.parse_args()
    print(average(args.models, args.out, args.name or args.out.stem))


if __name__ == "__main__":
    main()
