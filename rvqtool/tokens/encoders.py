"""What turns a group of source files into Codes, on whichever worker runs it.

`AudioEncoder` encodes audio with a codec, a reader thread decoding (and resampling) the next
blocks while the model encodes the current ones; `BatchedAudioEncoder` (for GPUs) runs the encoder
on batches of equal-length windows from several files; `CodeReader` loads existing code files
(for `rvq export`). All are `GroupWorker`s: `encode_group(paths) -> [Codes or its Failure]`, in
order (`iter_group` yields them one by one). A failure costs only its own file.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
from typing import Iterator

import numpy as np
import torch

from rvqtool.errors import Failure, UserError
from rvqtool.io.codes import Codes, load_codes

BLOCK_SECONDS = 5.0    # reading granularity: small enough that reading overlaps encoding within a file
PREFETCH_BLOCKS = 8


def cpu_threads(workers: int) -> int:
    """torch threads per worker: the cores this process may use (or OMP_NUM_THREADS), shared out."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        cores = min(cores, max(1, int(os.environ["OMP_NUM_THREADS"])))
    return max(1, cores // max(1, workers))


class GroupWorker:
    """Turns a group of source files into their Codes (or Failures), in order, on one worker."""

    def iter_group(self, paths: list[str]) -> Iterator[Codes | Failure]:
        """Each file's result as soon as it is ready (what progress reports follow)."""
        yield from self.encode_group(paths)

    def encode_group(self, paths: list[str]) -> list[Codes | Failure]:
        return list(self.iter_group(paths))


class CodeReader(GroupWorker):
    """Code files already encoded (`rvq export`): read, nothing encoded."""

    def iter_group(self, paths: list[str]) -> Iterator[Codes | Failure]:
        for path in paths:
            try:
                yield load_codes(path)
            except Exception as exc:  # noqa: BLE001 -- reported per file, never fatal to the job
                yield Failure.of(path, exc)


class AudioEncoder(GroupWorker):
    def __init__(self, codec, n_q: int):
        """`n_q`: the levels to encode (as `rvq encode --n-q`; SNAC's 3 levels make 7 rows)."""
        self.codec, self.n_q = codec, n_q

    def iter_group(self, paths: list[str]) -> Iterator[Codes | Failure]:
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
                    items.put((i, "error", Failure.of(path, exc)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            for i, path in enumerate(paths):
                yield self._encode_one(i, path, items)
        finally:
            stop.set()
            while reader.is_alive():          # unblock a reader waiting on a full queue
                try:
                    items.get(timeout=0.05)
                except queue.Empty:
                    pass

    def _encode_one(self, i: int, path: str, items: queue.Queue) -> Codes | Failure:
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
                    raise UserError(value.reason)
                return

        try:
            return self.codec.encode_blocks(blocks(), self.n_q, "mono", info.sample_rate)
        except Exception as exc:  # noqa: BLE001
            while not state["finished"]:      # skip what the reader still holds of this file
                _, kind, _ = items.get()
                state["finished"] = kind in ("end", "error")
            return Failure.of(path, exc)


class BatchedAudioEncoder(AudioEncoder):
    """For GPUs: the encoder runs on batches of windows instead of one window at a time.

    A file is cut into the codec's windows (`Codec.windowing`: `chunk_frames` frames with the
    encoder's receptive field on each side). All windows inside a file have the same length, and so
    do short files of the same length; windows are bucketed by length across the group and each
    bucket goes through the encoder `batch` at a time. Nothing is padded, so every window sees
    exactly the samples it sees unbatched and the codes are the same (tested on CPU against
    `encode_file`). A streaming model (Mimi) runs files of the same number of frames together
    through one stream, each zero-padded to whole frames as it is alone; a whole-input multi-rate
    model (SNAC 32/44 kHz) runs files of the same `frames(n)` together, each zero-padded to those
    frames as the model pads it alone. Files longer than `MAX_SECONDS`, and other codecs that
    encode whole inputs, take the streaming path of `AudioEncoder`."""

    MAX_SECONDS = 600.0

    def __init__(self, codec, n_q: int, batch: int):
        super().__init__(codec, n_q)
        self.batch = batch
        silence = np.zeros((1, codec.hop_length), np.float32)
        self.template = codec.encode_blocks([silence], self.n_q, "mono", codec.sample_rate).meta

    def iter_group(self, paths: list[str]) -> Iterator[Codes | Failure]:
        yield from self.encode_group(paths)          # a group is encoded as a whole

    def _streamed(self, paths: list[str]) -> list[Codes | Failure]:
        return list(AudioEncoder.iter_group(self, paths))

    def encode_group(self, paths: list[str]) -> list[Codes | Failure]:
        from rvqtool.io.audio import audio_info, read_audio

        if self.codec.whole_input and self.codec.multiples is None:
            return self._streamed(paths)
        out: dict[int, Codes | Failure] = {}
        audio: dict[int, tuple[np.ndarray, int]] = {}
        for i, path in enumerate(paths):
            try:
                info = audio_info(path)
                if info.seconds > self.MAX_SECONDS:
                    out[i] = self._streamed([path])[0]
                else:
                    audio[i] = (read_audio(path, self.codec.sample_rate)[0], info.sample_rate)
            except Exception as exc:  # noqa: BLE001
                out[i] = Failure.of(path, exc)
        try:
            out.update(self._encode_batched(audio))
        except Exception:  # noqa: BLE001 -- a fault in a batch: redo its files one by one
            out.update({i: self._streamed([paths[i]])[0] for i in audio})
        return [out[i] for i in range(len(paths))]

    @torch.inference_mode()
    def _encode_batched(self, audio: dict[int, tuple[np.ndarray, int]]) -> dict[int, Codes]:
        codec, hop, windows = self.codec, self.codec.hop_length, self.codec.windowing
        padded, buckets = {}, {}
        for i, (wav, _) in audio.items():
            if not np.isfinite(wav).all():
                raise UserError("NaN or infinite samples")     # rare: the whole group goes one by one
            padded[i] = np.pad(wav, (0, -len(wav) % hop))
        if codec.streaming:
            return self._encode_streams(audio, padded)
        if codec.whole_input:
            return self._encode_padded(audio)
        per_frame = codec.latent_frames_per_frame
        for i, (wav, _) in audio.items():
            for w, window in enumerate(windows.encode_windows(len(wav))):
                buckets.setdefault(window[3] - window[2], []).append((i, w, window))
        codes: dict[tuple[int, int], np.ndarray] = {}
        for members in buckets.values():
            for b in range(0, len(members), self.batch):
                part = members[b:b + self.batch]
                x = torch.from_numpy(np.stack([padded[i][start:stop] for i, _, (_, _, start, stop) in part]))
                latent = codec.model.encode_latents(x[:, None, :].to(codec.device))
                for row, (i, w, (first, end, start, _)) in enumerate(part):
                    piece = latent[row:row + 1, :, (first - start // hop) * per_frame: (end - start // hop) * per_frame]
                    codes[i, w] = codec.model.quantize(piece, self.n_q).cpu().numpy()
        result = {}
        for i, (wav, source_rate) in audio.items():
            pieces = [codes[i, w] for w in range(len(windows.encode_windows(len(wav))))]
            meta = dataclasses.replace(self.template, length=len(wav), source_sample_rate=int(source_rate))
            result[i] = Codes(np.concatenate(pieces, axis=-1), meta)
        return result

    def _encode_padded(self, audio: dict[int, tuple[np.ndarray, int]]) -> dict[int, Codes]:
        """Whole inputs of a multi-rate model, `batch` of the same frame count at a time, each padded
        with zeros to those frames (what the model's own padding gives it alone)."""
        codec = self.codec
        frames = {i: codec.frames(len(wav)) for i, (wav, _) in audio.items()}
        buckets: dict[int, list[int]] = {}
        for i, n in frames.items():
            buckets.setdefault(n, []).append(i)
        result = {}
        for n, members in buckets.items():
            for b in range(0, len(members), self.batch):
                part = members[b:b + self.batch]
                stacked = np.stack([np.pad(audio[i][0], (0, n * codec.hop_length - len(audio[i][0]))) for i in part])
                x = torch.from_numpy(stacked)[:, None, :].to(codec.device)
                codes = codec.model.quantize(codec.model.encode_latents(x), self.n_q).cpu().numpy()
                for row, i in enumerate(part):
                    wav, source_rate = audio[i]
                    meta = dataclasses.replace(self.template, length=len(wav), source_sample_rate=int(source_rate))
                    result[i] = Codes(codes[row:row + 1], meta)
        return result

    def _encode_streams(self, audio: dict[int, tuple[np.ndarray, int]], padded: dict[int, np.ndarray]) -> dict[int, Codes]:
        """Files of equal padded length, `batch` at a time, as the channels of one stream."""
        buckets: dict[int, list[int]] = {}
        for i, wav in padded.items():
            buckets.setdefault(len(wav), []).append(i)
        result = {}
        for members in buckets.values():
            for b in range(0, len(members), self.batch):
                part = members[b:b + self.batch]
                stacked = np.stack([padded[i] for i in part])
                pieces = [self.codec.model.quantize(latent, self.n_q).cpu().numpy()
                          for latent, _ in self.codec.latent_windows([stacked])]
                codes = np.concatenate(pieces, axis=-1)
                for row, i in enumerate(part):
                    wav, source_rate = audio[i]
                    meta = dataclasses.replace(self.template, length=len(wav), source_sample_rate=int(source_rate))
                    result[i] = Codes(codes[row:row + 1], meta)
        return result


# ---- worker processes -------------------------------------------------------------------------
_worker = None


def init_worker(kind: str, model: str, device: str, n_q: int, threads: int, batch: int = 1) -> None:
    """Pool initializer: load the model once per process."""
    global _worker
    torch.set_num_threads(threads)
    _worker = make_worker(kind, model, device, n_q, batch)


def make_worker(kind: str, model: str, device: str, n_q: int, batch: int = 1) -> GroupWorker:
    """What a worker of job `kind` runs: "export" reads code files, "tokenize" encodes audio."""
    return CodeReader() if kind == "export" else make_encoder(model, device, n_q, batch)


def make_encoder(model: str, device: str, n_q: int, batch: int = 1) -> AudioEncoder:
    """Load the model and wrap it (`encoder_for`)."""
    from rvqtool.codec import load_codec

    return encoder_for(load_codec(model, device), n_q, batch)


def encoder_for(codec, n_q: int, batch: int = 1) -> AudioEncoder:
    """batch: windows per encoder call (1: stream file by file; more: `BatchedAudioEncoder`)."""
    return BatchedAudioEncoder(codec, n_q, batch) if batch > 1 else AudioEncoder(codec, n_q)


def run_group(task: tuple[int, list[str]]) -> tuple[int, list[Codes | Failure]]:
    first, paths = task
    return first, _worker.encode_group(paths)
