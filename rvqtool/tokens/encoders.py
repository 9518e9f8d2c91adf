"""What turns a group of source files into Codes, on whichever worker runs it.

`AudioEncoder` encodes audio with a codec, a reader thread decoding (and resampling) the next
blocks while the model encodes the current ones; `CodeReader` loads existing code files (for
`rvq export`). Both answer `encode_group(paths) -> [Codes or the reason it failed]`, in order.
A failure costs only its own file.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

from rvqtool.errors import UserError
from rvqtool.io.codes import Codes, load_codes

BLOCK_SECONDS = 5.0    # reading granularity: small enough that reading overlaps encoding within a file
PREFETCH_BLOCKS = 8


def failure_reason(path: str, exc: Exception) -> str:
    return str(exc) if isinstance(exc, UserError) else f"{path}: unexpected {type(exc).__name__}: {exc}"


def cpu_threads(workers: int) -> int:
    """torch threads per worker: the cores this process may use (or OMP_NUM_THREADS), shared out."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        cores = min(cores, max(1, int(os.environ["OMP_NUM_THREADS"])))
    return max(1, cores // max(1, workers))


class CodeReader:
    def encode_group(self, paths: list[str]) -> list[Codes | str]:
        out: list[Codes | str] = []
        for path in paths:
            try:
                out.append(load_codes(path))
            except Exception as exc:  # noqa: BLE001 -- reported per file, never fatal to the job
                out.append(failure_reason(path, exc))
        return out


class AudioEncoder:
    def __init__(self, codec, n_q: int):
        self.codec, self.n_q = codec, n_q

    def encode_group(self, paths: list[str]) -> list[Codes | str]:
        from rvqtool.io.audio import open_audio

        items: queue.Queue = queue.Queue(maxsize=PREFETCH_BLOCKS)
        stop = threading.Event()

        def read() -> None:
            for i, path in enumerate(paths):
                try:
                    info, blocks = open_audio(path, self.codec.sample_rate, mono=True, block_seconds=BLOCK_SECONDS)
                    items.put((i, "info", info))
                    for block in blocks:
                        if stop.is_set():
                            return
                        items.put((i, "block", block))
                    items.put((i, "end", None))
                except Exception as exc:  # noqa: BLE001
                    items.put((i, "error", failure_reason(path, exc)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        out: list[Codes | str] = []
        try:
            for i, path in enumerate(paths):
                out.append(self._encode_one(i, path, items))
        finally:
            stop.set()
            while reader.is_alive():          # unblock a reader waiting on a full queue
                try:
                    items.get(timeout=0.05)
                except queue.Empty:
                    pass
        return out

    def _encode_one(self, i: int, path: str, items: queue.Queue) -> Codes | str:
        state = {"finished": False}
        _, kind, value = items.get()
        if kind == "error":
            return value
        info = value

        def blocks() -> Iterator:
            while True:
                _, kind, value = items.get()
                if kind == "block":
                    yield value
                    continue
                state["finished"] = True
                if kind == "error":
                    raise UserError(value)
                return

        try:
            return self.codec.encode_blocks(blocks(), self.n_q, "mono", info.sample_rate)
        except Exception as exc:  # noqa: BLE001
            while not state["finished"]:      # skip what the reader still holds of this file
                _, kind, _ = items.get()
                state["finished"] = kind in ("end", "error")
            return failure_reason(path, exc)


# ---- worker processes -------------------------------------------------------------------------
_worker = None


def init_worker(kind: str, model: str, device: str, n_q: int, threads: int) -> None:
    """Pool initializer: load the model once per process."""
    global _worker
    import torch

    torch.set_num_threads(threads)
    _worker = make_encoder(kind, model, device, n_q)


def make_encoder(kind: str, model: str, device: str, n_q: int):
    if kind == "export":
        return CodeReader()
    from rvqtool.codec import load_codec

    return AudioEncoder(load_codec(model, device), n_q)


def run_group(task: tuple[int, list[str]]) -> tuple[int, list[Codes | str]]:
    first, paths = task
    return first, _worker.encode_group(paths)
