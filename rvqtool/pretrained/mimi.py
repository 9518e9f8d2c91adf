"""Mimi checkpoints, in either published layout, onto rvqtool's MimiCodecModel.

- moshi's `tokenizer-e351c8d8-checkpoint125.safetensors`: the state dict of the model moshi's
  `get_mimi` builds (`encoder.model.N.conv.conv.weight`, `quantizer.rvq_rest.vq.layers.N.
  _codebook.embedding_sum`, ...). It holds no config: the architecture is read off the tensors'
  shapes (widths, strides, kernel sizes, layers, levels, codebooks); what shapes cannot tell
  (head width 64, a 250-frame window, RoPE period 10000) is Mimi's.
- the transformers `kyutai/mimi` folder: `config.json` + `model.safetensors` with transformers'
  names (`encoder.layers.N.conv.weight`, `encoder_transformer.layers.N.self_attn.q_proj.weight`;
  also the `encoder.encoder_seanet.` nesting newer transformers use in memory). PATH may be the
  folder or its `model.safetensors`.

Both become our names. Queries and keys: transformers' rows are already in RoPE's halves
layout, moshi's interleaved rows are permuted to it (what transformers' conversion script does).
Codebooks are EMA sums: each code is embedding_sum / max(cluster_usage, 1e-5), as both compute.
Any other file is refused in one line; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as read_safetensors

from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.model.mimi import MimiCodecModel
from rvqtool.pretrained.loader import check_shapes

KIND = "mimi"
_EPSILON = 1e-5          # both references' clamp of the cluster usage
_HEAD_DIM = 64           # Mimi's; a moshi file does not record its head count
_MOSHI_TRANSFORMER = {"context": 250, "max_period": 10000.0, "norm_eps": 1e-5}
_NOT_MIMI = ("not a Mimi checkpoint (expected moshi's tokenizer-*.safetensors or a transformers "
             "kyutai/mimi folder with config.json and model.safetensors)")


def load_mimi(path: str | Path) -> tuple[MimiCodecModel, dict]:
    """Our model with the checkpoint's weights, and the meta a Codec needs (name, content hash)."""
    path = Path(path)
    weights, config_file = _files(path)
    tensors, sha256 = _read(weights)
    if _layout(tensors, weights) == "moshi":
        config = _moshi_config(tensors, weights)
        state = _moshi_state(tensors, config)
    else:
        if config_file is None:
            raise UserError(f"{weights}: transformers' Mimi weights need the config.json of their folder beside them")
        config = _transformers_config(config_file)
        state = _transformers_state(tensors, config)
    model = MimiCodecModel(config)
    ours = model.state_dict()
    unexpected = [k for k in state if k not in ours]
    missing = [k for k in ours if k not in state]
    if unexpected or missing:
        raise UserError(f"{weights}: not a Mimi checkpoint: "
                        + (f"unexpected {unexpected[:2]}" if unexpected else f"missing {missing[:2]}"))
    model.load_state_dict(check_shapes(state, ours, weights, "a Mimi"))
    return model.eval(), {"name": KIND, "sha256": sha256}


def _files(path: Path) -> tuple[Path, Path | None]:
    """(weights file, transformers config.json or None)."""
    if path.is_dir():
        weights, config = path / "model.safetensors", path / "config.json"
        if not weights.is_file() or not config.is_file():
            raise UserError(f"{path}: {_NOT_MIMI}")
        return weights, config
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file or folder")
    config = path.with_name("config.json")
    return path, (config if config.is_file() else None)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    try:
        data = path.read_bytes()
        tensors = read_safetensors(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})")
    except (SafetensorError, ValueError):
        raise UserError(f"{path}: {_NOT_MIMI}")
    return tensors, hashlib.sha256(data).hexdigest()


def _layout(tensors: dict[str, torch.Tensor], path: Path) -> str:
    if "encoder.model.0.conv.conv.weight" in tensors and "quantizer.rvq_first.input_proj.weight" in tensors:
        return "moshi"
    if any(k.startswith(("encoder.layers.0.", "encoder.encoder_seanet.layers.0.")) for k in tensors) \
            and "quantizer.semantic_residual_vector_quantizer.input_proj.weight" in tensors:
        return "transformers"
    raise UserError(f"{path}: {_NOT_MIMI}")


def _config(*, filters: int, dimension: int, ratios: list[int], kernel: int, last_kernel: int,
            residual_kernel: int, dilation_base: int, compress: int, residual_layers: int, levels: int,
            semantic_levels: int, codebook_size: int, codebook_dim: int, transformer: dict,
            resample_stride: int = 2) -> CodecConfig:
    return CodecConfig(
        sample_rate=24000, channels=1, ratios=(resample_stride, *ratios), encoder_filters=filters,
        decoder_filters=filters, dimension=dimension, n_residual_layers=residual_layers, kernel_size=kernel,
        last_kernel_size=last_kernel, residual_kernel_size=residual_kernel, dilation_base=dilation_base,
        compress=compress, lstm_layers=0, causal=True, n_quantizers=levels, codebook_size=codebook_size,
        extra={"architecture": "mimi", "codebook_dim": codebook_dim, "semantic_levels": semantic_levels,
               "transformer": transformer})


# ---- moshi ---------------------------------------------------------------------------------
def _moshi_config(t: dict[str, torch.Tensor], path: Path) -> CodecConfig:
    """The architecture, read off the tensors' shapes (moshi files carry no config)."""
    try:
        first = t["encoder.model.0.conv.conv.weight"]
        filters, kernel = first.shape[0], first.shape[2]
        strided = sorted(int(m.group(1)) for k in t
                         if (m := re.fullmatch(r"encoder\.model\.(\d+)\.conv\.conv\.weight", k)))[1:-1]
        ratios = [t[f"encoder.model.{i}.conv.conv.weight"].shape[2] // 2 for i in strided][::-1]
        last = t[f"encoder.model.{strided[-1] + 2}.conv.conv.weight"]
        residual = t["encoder.model.1.block.1.conv.conv.weight"]
        residual_layers = strided[0] - 2   # 0: conv, then the units, an ELU, the strided conv
        layers = 1 + max(int(m.group(1)) for k in t
                         if (m := re.match(r"encoder_transformer\.transformer\.layers\.(\d+)\.", k)))
        prefix = "encoder_transformer.transformer.layers.0."
        dimension = t[prefix + "norm1.weight"].shape[0]
        levels = {name: 1 + max(int(m.group(1)) for k in t
                                if (m := re.match(rf"quantizer\.{name}\.vq\.layers\.(\d+)\.", k)))
                  for name in ("rvq_first", "rvq_rest")}
        codebook = t["quantizer.rvq_first.vq.layers.0._codebook.embedding_sum"]
        transformer = {**_MOSHI_TRANSFORMER, "layers": layers, "heads": dimension // _HEAD_DIM,
                       "feedforward": t[prefix + "linear1.weight"].shape[0],
                       "layer_scale": prefix + "layer_scale_1.scale" in t}
        return _config(filters=filters, dimension=dimension, ratios=ratios, kernel=kernel,
                       last_kernel=last.shape[2], residual_kernel=residual.shape[2], dilation_base=2,
                       compress=filters // residual.shape[0], residual_layers=residual_layers,
                       levels=levels["rvq_first"] + levels["rvq_rest"], semantic_levels=levels["rvq_first"],
                       codebook_size=codebook.shape[0], codebook_dim=codebook.shape[1], transformer=transformer,
                       resample_stride=t["downsample.conv.conv.conv.weight"].shape[2] // 2)
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"{path}: not a Mimi checkpoint (moshi layout, no tensor {exc})")


_MOSHI_RENAMES = [(".conv.conv.weight", ".kernel"), (".conv.conv.bias", ".bias"),
                  (".convtr.convtr.weight", ".kernel"), (".convtr.convtr.bias", ".bias"),
                  ("_transformer.transformer.layers.", "_transformer.layers."),
                  (".self_attn.in_projs.0.", ".self_attn.in_proj."), (".self_attn.out_projs.0.", ".self_attn.out_proj."),
                  (".layer_scale_1.scale", ".layer_scale_1"), (".layer_scale_2.scale", ".layer_scale_2")]


def _moshi_state(t: dict[str, torch.Tensor], config: CodecConfig) -> dict[str, torch.Tensor]:
    state = {"downsample.kernel": t.get("downsample.conv.conv.conv.weight"),
             "upsample.weight": t.get("upsample.convtr.convtr.convtr.weight")}
    heads = config.extra["transformer"]["heads"]
    for key, value in t.items():
        if key.startswith(("encoder.", "decoder.", "encoder_transformer.", "decoder_transformer.")):
            for old, new in _MOSHI_RENAMES:
                key = key.replace(old, new)
            if key.endswith("self_attn.in_proj.weight"):
                value = _interleaved_to_halves(value, heads)
            state[key] = value
    _split_rvq(state, t, {"semantic": "quantizer.rvq_first.", "acoustic": "quantizer.rvq_rest."},
               "vq.layers.{}._codebook.", "embedding_sum")
    return {k: v for k, v in state.items() if v is not None}


def _interleaved_to_halves(in_proj: torch.Tensor, heads: int) -> torch.Tensor:
    """Query and key rows (pairs (re, im) per head) reordered as (all re, all im) per head."""
    q, k, v = in_proj.chunk(3)
    def permute(w):
        return w.reshape(heads, -1, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)
    return torch.cat([permute(q), permute(k), v])


# ---- transformers ----------------------------------------------------------------------------
def _transformers_config(path: Path) -> CodecConfig:
    try:
        c = json.loads(path.read_text())
        if c.get("model_type") != "mimi":
            raise UserError(f"{path}: a {c.get('model_type')!r} model, not Mimi")
        unsupported = {k: c.get(k) for k, ok in (
            ("use_causal_conv", True), ("pad_mode", "constant"), ("use_conv_shortcut", False),
            ("hidden_act", "gelu"), ("audio_channels", 1), ("sampling_rate", 24000), ("trim_right_ratio", 1.0),
            ("num_key_value_heads", c.get("num_attention_heads")), ("upsample_groups", c.get("hidden_size")),
            ("vector_quantization_hidden_dimension", c.get("codebook_dim"))) if c.get(k, ok) != ok}
        if unsupported:
            raise UserError(f"{path}: a Mimi variant rvqtool does not run ({unsupported})")
        rope = c.get("rope_parameters") or {}
        dimension = int(c["hidden_size"])
        scale = c.get("layer_scale_initial_scale")
        transformer = {"layers": int(c["num_hidden_layers"]), "heads": int(c["num_attention_heads"]),
                       "feedforward": int(c["intermediate_size"]), "context": int(c["sliding_window"]),
                       "max_period": float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
                       "norm_eps": float(c.get("norm_eps", 1e-5)), "layer_scale": scale is not None}
        if int(c.get("head_dim") or dimension // transformer["heads"]) * transformer["heads"] != dimension:
            raise UserError(f"{path}: heads x head_dim != hidden_size is not supported")
        return _config(filters=int(c["num_filters"]), dimension=dimension,
                       ratios=[int(r) for r in c["upsampling_ratios"]], kernel=int(c["kernel_size"]),
                       last_kernel=int(c["last_kernel_size"]), residual_kernel=int(c["residual_kernel_size"]),
                       dilation_base=int(c["dilation_growth_rate"]), compress=int(c["compress"]),
                       residual_layers=int(c["num_residual_layers"]), levels=int(c["num_quantizers"]),
                       semantic_levels=int(c["num_semantic_quantizers"]), codebook_size=int(c["codebook_size"]),
                       codebook_dim=int(c["codebook_dim"]), transformer=transformer)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: not a transformers Mimi config ({type(exc).__name__}: {exc})")


_TRANSFORMERS_RENAMES = [  # newer transformers nest the halves; the published file is flat
    (r"^encoder\.encoder_seanet\.layers\.", "encoder.layers."), (r"^encoder\.encoder_transformer\.", "encoder_transformer."),
    (r"^encoder\.downsample\.", "downsample."), (r"^decoder\.upsample\.", "upsample."),
    (r"^decoder\.decoder_transformer\.", "decoder_transformer."), (r"^decoder\.decoder_seanet\.layers\.", "decoder.layers."),
    # then ours
    (r"^(en|de)coder\.layers\.", r"\1coder.model."), (r"\.conv\.weight$", ".kernel"), (r"\.conv\.bias$", ".bias"),
    (r"\.input_layernorm\.", ".norm1."), (r"\.post_attention_layernorm\.", ".norm2."),
    (r"\.self_attn\.o_proj\.", ".self_attn.out_proj."), (r"\.mlp\.fc1\.", ".linear1."), (r"\.mlp\.fc2\.", ".linear2."),
    (r"\.self_attn_layer_scale\.scale$", ".layer_scale_1"), (r"\.mlp_layer_scale\.scale$", ".layer_scale_2"),
    (r"^downsample\.kernel$", "downsample.kernel"), (r"^upsample\.kernel$", "upsample.weight"),
]


def _transformers_state(t: dict[str, torch.Tensor], config: CodecConfig) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in t.items():
        for pattern, replacement in _TRANSFORMERS_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    state = {}
    for key, value in renamed.items():
        if ".self_attn.q_proj." in key:
            base = key.replace(".q_proj.", ".")
            parts = [renamed.get(key.replace(".q_proj.", f".{p}_proj.")) for p in "qkv"]
            if any(p is None for p in parts):
                continue   # reported as missing in_proj
            state[base.replace(".self_attn.", ".self_attn.in_proj.")] = torch.cat(parts)
        elif re.search(r"\.self_attn\.[kv]_proj\.", key):
            continue
        elif not key.startswith("quantizer."):
            state[key] = value
    _split_rvq(state, t, {"semantic": "quantizer.semantic_residual_vector_quantizer.",
                          "acoustic": "quantizer.acoustic_residual_vector_quantizer."}, "layers.{}.codebook.", "embed_sum")
    return {k: v for k, v in state.items() if v is not None}


def _split_rvq(state: dict, t: dict, prefixes: dict[str, str], layers: str, sums: str) -> None:
    """The two quantizers' projections and codebooks into ours ({ours: their prefix}): the layouts
    differ only in names."""
    for ours, prefix in prefixes.items():
        state[f"quantizer.{ours}_in.weight"] = _squeeze(t.get(prefix + "input_proj.weight"))
        state[f"quantizer.{ours}_out.weight"] = _squeeze(t.get(prefix + "output_proj.weight"))
        state.update(_codebooks(t, prefix + layers, sums, f"quantizer.{ours}."))


# ---- shared ----------------------------------------------------------------------------------
def _squeeze(conv_weight: torch.Tensor | None) -> torch.Tensor | None:
    """A 1x1 Conv1d weight [out, in, 1] as a Linear weight [out, in]."""
    return conv_weight[..., 0] if conv_weight is not None and conv_weight.ndim == 3 else conv_weight


def _codebooks(t: dict[str, torch.Tensor], pattern: str, sum_name: str, ours: str) -> dict[str, torch.Tensor]:
    """Per-level EMA sums and usages -> our stacked [levels, codes, dim] buffers."""
    sums, usages, level = [], [], 0
    while pattern.format(level) + sum_name in t:
        sums.append(t[pattern.format(level) + sum_name].float())
        usages.append(t.get(pattern.format(level) + "cluster_usage", torch.ones(len(sums[-1]))).float())
        level += 1
    if not sums:
        return {}
    embed_sum, usage = torch.stack(sums), torch.stack(usages)
    return {ours + "embed": embed_sum / usage.clamp(min=_EPSILON)[..., None], ours + "embed_avg": embed_sum,
            ours + "cluster_size": usage, ours + "initialized": torch.tensor(True)}


def load(kind: str, path: Path) -> tuple[MimiCodecModel, dict]:
    """The registry's entry (`mimi:PATH`): `load_mimi`."""
    return load_mimi(path)


def build(config: CodecConfig) -> MimiCodecModel:
    """The module a converted Mimi file's weights fill."""
    return MimiCodecModel(config)
