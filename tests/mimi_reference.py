"""Reference Mimi models (moshi's and transformers') with random weights, for tests/test_mimi.py
and benchmarks/mimi_speed.py.

No checkpoint can be downloaded here, so moshi's model is built from a config (the published
one, or a narrower one of the same architecture for speed) and its weights redrawn, seeded:

* convs and linears get a gain that keeps activations at unit scale through the stacks (the
  default init shrinks them layer by layer, where every frame's latent is nearly the same);
* layer scales are raised from 0.01 to 0.3, so the transformers change the latent, not only pass it;
* the codebooks (which start at zero, so every code would be 0) are filled from real latents as
  tests/pretrained_reference.py fills EnCodec's: k-means on the residuals of the example clips'
  latents at two gains and sub-frame offsets (never 0: the test audio is held out of the fit), and
  written as EMA sums (embedding_sum = centroid x cluster_usage) with uneven usages, so the
  division the loaders must repeat is exercised.

The same weights are then written in both published layouts: moshi's state dict as a
safetensors file, and transformers' `MimiModel` folder (config.json + model.safetensors) built
with `save_pretrained` from the moshi weights mapped as transformers' conversion script maps them.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.pretrained_reference import clips, fill_codebooks

# the published Mimi (moshi's loaders._seanet_kwargs, _transformer_kwargs, _quantizer_kwargs)
FULL = {"filters": 64, "dimension": 512, "layers": 8, "heads": 8, "feedforward": 2048, "levels": 32,
        "codebook_size": 2048, "codebook_dim": 256}
# the same architecture, narrower: every code path, a fraction of the time
SMALL = {"filters": 16, "dimension": 128, "layers": 2, "heads": 2, "feedforward": 256, "levels": 32,
         "codebook_size": 64, "codebook_dim": 32}


def import_moshi():
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    return pytest.importorskip("moshi.models.loaders")


def import_transformers():
    return pytest.importorskip("transformers")


def moshi_config(size: dict) -> dict:
    return {
        "channels": 1, "sample_rate": 24000, "frame_rate": 12.5,
        "seanet": {"channels": 1, "dimension": size["dimension"], "causal": True, "n_filters": size["filters"],
                   "n_residual_layers": 1, "activation": "ELU", "compress": 2, "dilation_base": 2,
                   "disable_norm_outer_blocks": 0, "kernel_size": 7, "residual_kernel_size": 3,
                   "last_kernel_size": 3, "norm": "none", "pad_mode": "constant", "ratios": [8, 6, 5, 4],
                   "true_skip": True},
        "quantizer": {"dimension": size["codebook_dim"], "n_q": size["levels"], "bins": size["codebook_size"],
                      "input_dimension": size["dimension"], "output_dimension": size["dimension"]},
        "transformer": {"d_model": size["dimension"], "num_heads": size["heads"], "num_layers": size["layers"],
                        "causal": True, "layer_scale": 0.01, "context": 250, "conv_layout": True,
                        "max_period": 10000, "gating": "none", "norm": "layer_norm",
                        "positional_embedding": "rope", "dim_feedforward": size["feedforward"],
                        "input_dimension": size["dimension"], "output_dimensions": [size["dimension"]]},
    }


@torch.no_grad()
def moshi_mimi(directory: Path, size: dict = SMALL, seed: int = 0, fill: bool = True):
    """(moshi's MimiModel, path of its state dict as moshi's safetensors file); `fill`: codebooks
    fitted to the example clips (else Gaussian, see `random_mimi_codebooks`)."""
    loaders = import_moshi()
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = loaders.get_mimi(None, mimi_config=moshi_config(size), num_codebooks=size["levels"]).eval()
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale_1.scale") or name.endswith("layer_scale_2.scale"):
            p.fill_(0.3)
        elif name.endswith(".bias") and "norm" not in name:
            p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
        elif p.ndim >= 2:
            fan_in = p[0].numel() if "upsample" not in name else p.shape[-1]
            p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))
    if fill:
        fill_mimi_codebooks(model, seed)
    else:
        random_mimi_codebooks(model, np.concatenate([c[: 24000 * 2] for c in clips(24000)]), seed)
    path = directory / "tokenizer-test.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


@torch.no_grad()
def random_mimi_codebooks(model, audio: np.ndarray, seed: int = 0) -> None:
    """Gaussian codes at the scale of each level's input (the projected latent of `audio`, then its
    residuals): codes vary and stay far from ties, without the seconds a k-means fit takes at the
    published size (2048 codes of 256 dims)."""
    latents = model._encode_to_unquantized_latent(torch.from_numpy(audio)[None, None])[0].T.contiguous()
    generator = torch.Generator().manual_seed(seed)
    for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
        residual = torch.nn.functional.linear(latents, rvq.input_proj.weight[..., 0])
        for layer in rvq.vq.layers:
            codebook = layer._codebook
            scale = residual.std(dim=0)
            centroids = residual.mean(dim=0) + torch.randn(codebook.embedding_sum.shape, generator=generator) * scale
            codebook.cluster_usage.fill_(1.0)
            codebook.embedding_sum.copy_(centroids)
            codebook._initialized.fill_(1.0)
            codebook.register_buffer("_embedding", None, persistent=False)
            residual = residual - centroids[torch.cdist(residual, centroids).argmin(dim=1)]


@torch.no_grad()
def fill_mimi_codebooks(model, seed: int = 0) -> None:
    audio = torch.from_numpy(np.concatenate(clips(24000)))
    latents = torch.cat([model._encode_to_unquantized_latent((audio[offset:] * gain)[None, None])[0].T
                         for offset in (320, 640, 960, 1280, 1600) for gain in (0.5, 1.0, 2.0)]).contiguous()
    generator = torch.Generator().manual_seed(seed)
    for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
        projected = torch.nn.functional.linear(latents, rvq.input_proj.weight[..., 0]).contiguous()
        codebooks = [torch.zeros_like(layer._codebook.embedding_sum) for layer in rvq.vq.layers]
        fill_codebooks(codebooks, projected, seed=seed)
        for layer, codebook in zip(rvq.vq.layers, codebooks):
            usage = torch.rand(codebook.shape[0], generator=generator) * 4 + 0.5
            layer._codebook.cluster_usage.copy_(usage)
            layer._codebook.embedding_sum.copy_(codebook * usage[:, None])
            layer._codebook._initialized.fill_(1.0)
            layer._codebook.register_buffer("_embedding", None, persistent=False)


def transformers_config(size: dict):
    transformers = import_transformers()
    return transformers.MimiConfig(
        hidden_size=size["dimension"], num_filters=size["filters"], num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"], num_key_value_heads=size["heads"],
        head_dim=size["dimension"] // size["heads"], intermediate_size=size["feedforward"],
        num_quantizers=size["levels"], codebook_size=size["codebook_size"], codebook_dim=size["codebook_dim"],
        vector_quantization_hidden_dimension=size["codebook_dim"], upsample_groups=size["dimension"])


def _permute_halves(w: torch.Tensor, heads: int) -> torch.Tensor:
    return w.view(heads, -1, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)


@torch.no_grad()
def transformers_mimi(moshi_model, directory: Path, size: dict = SMALL):
    """transformers' MimiModel with moshi_model's weights, saved as a kyutai/mimi folder."""
    transformers = import_transformers()
    model = transformers.MimiModel(transformers_config(size)).eval()
    ours = model.state_dict()
    renames = [("conv.conv.conv", "conv"), ("convtr.convtr.convtr", "conv"), ("conv.conv", "conv"),
               ("convtr.convtr", "conv"), ("quantizer.rvq_first.vq", "quantizer.semantic_residual_vector_quantizer"),
               ("quantizer.rvq_first", "quantizer.semantic_residual_vector_quantizer"),
               ("quantizer.rvq_rest.vq", "quantizer.acoustic_residual_vector_quantizer"),
               ("quantizer.rvq_rest", "quantizer.acoustic_residual_vector_quantizer"), ("_codebook", "codebook"),
               ("_initialized", "initialized"), ("embedding_sum", "embed_sum"), ("encoder.model", "encoder.layers"),
               ("decoder.model", "decoder.layers"), ("encoder_transformer.transformer", "encoder_transformer"),
               ("decoder_transformer.transformer", "decoder_transformer"), ("linear1", "mlp.fc1"),
               ("linear2", "mlp.fc2"), ("self_attn.out_projs.0", "self_attn.o_proj"), ("norm1", "input_layernorm"),
               ("norm2", "post_attention_layernorm"), ("layer_scale_1", "self_attn_layer_scale"),
               ("layer_scale_2", "mlp_layer_scale")]
    # transformers' in-memory names nest the halves; the published file is flat (conversion_mapping)
    nest = [("encoder.layers", "encoder.encoder_seanet.layers"), ("encoder_transformer.", "encoder.encoder_transformer."),
            ("downsample.", "encoder.downsample."), ("upsample.", "decoder.upsample."),
            ("decoder_transformer.", "decoder.decoder_transformer."), ("decoder.layers", "decoder.decoder_seanet.layers")]
    state = {}
    for key, value in moshi_model.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        if "self_attn.in_projs.0.weight" in key:
            q, k, v = value.chunk(3)
            for name, w in (("q", _permute_halves(q, size["heads"])), ("k", _permute_halves(k, size["heads"])), ("v", v)):
                state[key.replace("in_projs.0.weight", f"{name}_proj.weight")] = w
        else:
            state[key] = value
    nested = {}
    for key, value in state.items():
        for old, new in nest:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        nested[key] = value
    missing, unexpected = set(ours) - set(nested), set(nested) - set(ours)
    assert not missing and not unexpected, (sorted(missing)[:4], sorted(unexpected)[:4])
    model.load_state_dict(nested)
    folder = directory / "kyutai-mimi"
    model.save_pretrained(folder)
    return model, folder
