"""EnCodec checkpoints (`encodec_24khz-d7cc33bc.th`, `encodec_48khz-7e698e3e.th`) onto our modules.

The hyper-parameters are those the reference package builds each model with; the state dict's
names are renamed suffix by suffix (`.conv.conv.` -> `.`, `.convtr.norm.` -> `.norm.`, ...) and
the per-level codebooks stacked into our one [levels, codes, dim] buffer. A file that is not
exactly such a checkpoint (missing or extra tensors, wrong shapes) is refused.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.pretrained.loader import check_shapes, load_checkpoint, tensors_only
from rvqtool.model.encodec_model import EncodecCodecModel
from rvqtool.model.quantizer import TRAINING_ONLY

_COMMON = dict(ratios=(8, 5, 4, 2), encoder_filters=32, decoder_filters=32, dimension=128,
               n_residual_layers=1, kernel_size=7, last_kernel_size=7, residual_kernel_size=3,
               dilation_base=2, compress=2, lstm_layers=2, codebook_size=1024)

CONFIGS = {
    "encodec_24khz": CodecConfig(
        sample_rate=24000, channels=1, causal=True, n_quantizers=32, **_COMMON,
        extra={"architecture": "encodec", "pad_mode": "reflect", "norm": "weight_norm", "true_skip": False,
               "bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0]}),
    "encodec_48khz": CodecConfig(
        sample_rate=48000, channels=2, causal=False, n_quantizers=16, **_COMMON,
        extra={"architecture": "encodec", "pad_mode": "reflect", "norm": "time_group_norm", "true_skip": False,
               "segment_seconds": 1.0, "overlap": 0.01, "normalize": True,
               "bandwidths": [3.0, 6.0, 12.0, 24.0]}),
}

_RENAMES = [(".conv.conv.", "."), (".convtr.convtr.", "."), (".conv.norm.", ".norm."), (".convtr.norm.", ".norm."),
            (".parametrizations.weight.original0", ".weight_g"), (".parametrizations.weight.original1", ".weight_v")]
_CODEBOOK = re.compile(r"quantizer\.vq\.layers\.(\d+)\._codebook\.(embed|embed_avg|cluster_size|inited)$")
# what our model holds that a checkpoint does not need to (training statistics of the quantizer)
OURS_ONLY = frozenset({*TRAINING_ONLY, "quantizer.initialized"})


def build(config: CodecConfig) -> EncodecCodecModel:
    return EncodecCodecModel(config)


def load(kind: str, path: Path) -> EncodecCodecModel:
    """An EnCodec checkpoint of this `kind` on our modules."""
    checkpoint = load_checkpoint(path)
    if "state_dict" in checkpoint:
        raise UserError(f"{path}: not an {kind} checkpoint (it looks like a DAC checkpoint: use dac_44khz:PATH)")
    model = build(CONFIGS[kind])
    model.load_state_dict(map_state(tensors_only(checkpoint, path), model, path, kind), strict=False)
    return model


def map_state(state: dict[str, torch.Tensor], model: torch.nn.Module, path: str | Path, name: str) -> dict:
    """Reference names -> ours; refuses files that are not this model's checkpoint."""
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    codebooks: dict[int, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        match = _CODEBOOK.match(key)
        if match:
            if match.group(2) == "embed":
                codebooks[int(match.group(1))] = value
            continue
        new = key
        for old, repl in _RENAMES:
            new = new.replace(old, repl)
        if new not in ours and new.endswith(".weight") and new[:-len("weight")] + "kernel" in ours:
            new = new[:-len("weight")] + "kernel"
        if new in ours:
            mapped[new] = value
        else:
            unexpected.append(key)
    levels = model.config.n_quantizers
    if sorted(codebooks) == list(range(levels)):
        mapped["quantizer.embed"] = torch.stack([codebooks[i] for i in range(levels)])
    missing = [k for k in ours if k not in mapped and k not in OURS_ONLY]
    if unexpected or missing:
        hint = " (it looks like a DAC checkpoint: use dac_44khz:PATH)" if any(k.startswith("encoder.block.") for k in unexpected) else ""
        raise UserError(f"{path}: not an {name} checkpoint{hint}: "
                        + (f"unexpected {unexpected[:2]}" if unexpected else f"missing {missing[:2]}"))
    return check_shapes(mapped, ours, path, f"an {name}")
