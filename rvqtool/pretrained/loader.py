"""Read a foreign checkpoint without unpickling arbitrary objects.

`torch.load(weights_only=True)` only rebuilds tensors, dicts, lists and plain scalars; anything
else in the pickle (classes, functions, reduce calls) is refused. Every failure becomes one
UserError line.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from rvqtool.errors import UserError


def load_checkpoint(path: str | Path) -> dict:
    """The top-level dict of a torch checkpoint file, tensors on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # e.g. notes on the pickle protocol: not for the user
            warnings.simplefilter("ignore")
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError,
            ImportError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
        if isinstance(exc, OSError):
            raise UserError(f"{path}: cannot read ({exc.strerror or exc})")
        # torch's own text suggests weights_only=False, which is exactly what must not be done
        raise UserError(f"{path}: not a loadable torch checkpoint of plain tensors (a torch.save file "
                        "holding only tensors, dicts, lists and numbers)")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data


def tensors_only(state: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """Check that `state` maps names to tensors (a state dict), and return it."""
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state:
        raise UserError(f"{path}: not a state dict of tensors" + (f" (e.g. {bad[0]!r})" if bad else " (empty)"))
    return state


def check_shapes(mapped: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], path: str | Path,
                 what: str) -> dict[str, torch.Tensor]:
    """Refuse a mapped state whose tensors do not have our model's shapes; float32 copies."""
    wrong = [k for k, v in mapped.items() if v.shape != ours[k].shape]
    if wrong:
        k = wrong[0]
        raise UserError(f"{path}: not {what} checkpoint: {k} has shape {tuple(mapped[k].shape)}, "
                        f"expected {tuple(ours[k].shape)}")
    return {k: v.float() for k, v in mapped.items()}
