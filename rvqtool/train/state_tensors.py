"""A module's weights and its optimiser's moments as flat, prefixed tensors (safetensors holds no
nested state), and back: the codec's and the discriminator's sides of a training state alike."""
from __future__ import annotations

import torch


def to_tensors(module: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: str, moments: str) -> dict[str, torch.Tensor]:
    """{weights + name: tensor} for the module, {moments + "i.key": tensor} for the optimiser's
    state of its i-th parameter."""
    tensors = {f"{weights}{k}": v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    for i, param in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"{moments}{i}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    return tensors


def restore(tensors: dict[str, torch.Tensor], module: torch.nn.Module, optimizer: torch.optim.Optimizer,
            weights: str, moments: str) -> bool:
    """Load what `to_tensors` wrote under these prefixes; False (nothing touched) when it holds no weights."""
    state = {k[len(weights):]: v for k, v in tensors.items() if k.startswith(weights)}
    if not state:
        return False
    module.load_state_dict(state)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for key, value in tensors.items():
        if key.startswith(moments):
            index, name = key[len(moments):].split(".", 1)
            optimizer.state[params[int(index)]][name] = value.to(params[int(index)].device)
    return True
