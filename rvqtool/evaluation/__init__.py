"""Measuring a codec: reconstruction quality, bitrate, code usage and speed, beside Opus.

    from rvqtool import load_codec
    from rvqtool.evaluation import EvalOptions, evaluate, resolve
    result = evaluate(load_codec("default"), resolve(["clips/"]), EvalOptions(n_qs=(8, 2), metrics=("mel",)))
"""
from rvqtool.evaluation.inputs import Item, resolve
from rvqtool.evaluation.runner import EvalOptions, Progress, evaluate

__all__ = ["EvalOptions", "Item", "Progress", "evaluate", "resolve"]
