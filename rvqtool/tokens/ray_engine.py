"""`--engine ray`: the same groups of files, encoded by Ray Data actors that each hold the model,
on this machine or a cluster (`--address`). Results come back in plan order (Ray Data's
`preserve_order`), so the same shard writer writes the same bytes as a local run.

Needs `pip install "ray[data]"`. A local instance gets one logical CPU more than the actors take,
so Ray's own read tasks are never starved (with every CPU claimed by actors, a 2-core job hangs).
Actors ask for a GPU each when `--device cuda` (or auto, with CUDA present).
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
from typing import Iterator

from rvqtool.errors import UserError


class _EncodeActor:
    """Ray Data callable class: one model per actor, a batch = one group of files."""

    def __init__(self, kind: str, model: str, device: str, n_q: int, threads: int, batch: int):
        import torch

        from rvqtool.tokens.encoders import make_worker

        torch.set_num_threads(threads)
        self.encoder = make_worker(kind, model, device, n_q, batch)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        payloads = [pickle.dumps(self.encoder.encode_group(list(paths))) for paths in batch["paths"]]
        return {"first": np.asarray(batch["first"]), "payload": np.array(payloads, dtype=object)}


def ray_engine(kind: str, model: str, device: str, n_q: int, workers: int, address: str | None,
               threads: int | None = None, batch: int = 0):
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'ray[data]'")
    from rvqtool.tokens.encoders import cpu_threads

    if address:
        _check_reachable(address)

    def run(groups: list[tuple[int, list[str]]]) -> Iterator[tuple[int, list]]:
        from rvqtool.io.audio import _native_stderr_muted

        started = not ray.is_initialized()
        if started:
            # Ray's C++ core warns on stderr about every actor pool; at level fatal it says only
            # that it set the level, once, while starting (muted)
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
            with _native_stderr_muted():
                if address:
                    try:
                        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
                    except Exception as exc:  # Ray's types vary by cause; its words may name another address
                        raise UserError(f"--address {address}: cannot join the Ray cluster ({_causes(exc)})") from exc
                else:
                    # "local": a new instance, even where RAY_ADDRESS or a cluster file that a stopped
                    # cluster left in /tmp/ray points elsewhere (else Ray tries to join that one)
                    ray.init(address="local", num_cpus=workers + 1, include_dashboard=False,
                             logging_level=logging.ERROR, log_to_driver=False)
        try:
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True
            context.enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.ERROR)
            use_gpu = device.startswith("cuda") or (device == "auto" and _cluster_has_gpus(ray))
            items = [{"first": first, "paths": paths} for first, paths in groups]
            dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
                _EncodeActor, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                fn_constructor_args=(kind, model, "cuda" if use_gpu else "cpu", n_q,
                                     threads or (1 if address else cpu_threads(workers)),
                                     batch or (16 if use_gpu else 1)),
                num_cpus=1, num_gpus=1 if use_gpu else 0)
            for row in dataset.iter_rows():
                yield int(row["first"]), pickle.loads(row["payload"])
        finally:
            if started:
                ray.shutdown()

    return run


def _check_reachable(address: str) -> None:
    """Fail fast, naming the address given: on an address where nothing listens, ray.init retries
    for minutes (its log muted here) and then names the address it rewrote (127.0.0.1 becomes this
    node's IP). "auto", "local" and other forms without a port are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}): "
                        f"start one (ray start --head --port {port}) or correct --address")


def _causes(exc: BaseException) -> str:
    """An exception and its causes in one line, innermost last. Ray puts the real reason (a
    missing auth token, say) in a cause, and there inside a formatted traceback, whose last line
    is the exception: each message gives its first line, and that last line where it holds one."""
    seen: list[str] = []
    while exc is not None and len(seen) < 4:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else ""
        if "Traceback (most recent call last):" in text:
            text = f"{text.replace('Traceback (most recent call last):', '').strip()} {lines[-1]}".strip()
        seen.append(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    return "; ".join(seen)


def _cluster_has_gpus(ray) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0
