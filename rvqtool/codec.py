"""The Python API: `load_codec(name_or_path)` -> `Codec`, whose `encode`/`decode` work on numpy
audio and `Codes`, and whose `encode_file`/`decode_to_file` stream files of any length.

Long audio is cut into windows of `chunk_seconds` with the encoder's (decoder's) receptive field
as extra context on each side (rvqtool/windowing.py); the frames of each window's centre are kept.
Because the conv stack has a finite receptive field, windowed codes equal whole-file codes (tested).
A streaming model (Mimi, whose windows would need ~160 s of context) is fed through its streams
instead, `chunk_seconds` at a time, and a multi-rate model (SNAC) stores its levels as rows at the
coarse rate. A model that decodes to another rate than it encodes (NeuCodec) records that rate in
its code files, and decoding writes it. The model is used only through rvqtool/model/interface.py.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import torch

from rvqtool.errors import UsageError, UserError
from rvqtool.io.atomic import atomic_path
from rvqtool.io.audio import open_audio, output_format
from rvqtool.io.code_stream import CodeSpool, NpyCodes, save_spooled
from rvqtool.io.codes import Codes, CodesMeta, code_dtype, save_codes
from rvqtool.model.interface import (CodecModel, MultiRateCodecModel, NoisyDecoderModel, ResamplingDecoderModel,
                                     SegmentedCodecModel, StreamingCodecModel)
from rvqtool.registry import is_shipped_file, resolve_model, shipped_by_sha256
from rvqtool.windowing import EncodeWindow, Windowing


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device {device}: expected auto, cpu or cuda")
    return torch.device(device)


def check_channel_mode(channel_mode: str) -> None:
    """`mono` (downmix) or `split` (each channel on its own); checked before a batch starts, since
    a wrong mode is wrong for every file."""
    if channel_mode not in ("mono", "split"):
        raise UsageError(f"channel mode must be 'mono' or 'split', got {channel_mode!r}")


def load_codec(name_or_path: str | Path = "default", device: str = "cpu", chunk_seconds: float = 5.0) -> "Codec":
    """Load a shipped model by name ("default": the newest version; "default-v1" pins one), a model
    file written by `rvq train` or `rvq convert`, or a foreign checkpoint named KIND:PATH
    (`encodec_24khz:encodec_24khz-d7cc33bc.th`); rvqtool/registry.py resolves the name."""
    model, meta, path = resolve_model(name_or_path)
    return Codec(model, meta, path, resolve_device(device), chunk_seconds)


class Codec:
    def __init__(self, model: CodecModel, meta: dict, path: Path, device: torch.device, chunk_seconds: float):
        self.model = model.to(device).eval()
        self.config = model.config
        self.name, self.sha256, self.path, self.device = meta["name"], meta["sha256"], path, device
        # what codes record of where the model lies: a hint for decoding without --model, never an
        # identity (that is name + sha256): nothing for a shipped model, else the path as given
        self.model_hint = "" if is_shipped_file(path) else str(path)
        self.hop_length = self.config.hop_length
        # reference checkpoints (EnCodec, DAC) run in one pass as their packages run them: EnCodec's
        # LSTM sees the whole input, so windows would change its codes
        self.whole_input = model.whole_input
        self._segmented = model if isinstance(model, SegmentedCodecModel) else None
        # Mimi: fed through its streams (state instead of ~160 s of context per window)
        self._streaming = model if isinstance(model, StreamingCodecModel) and not model.whole_input else None
        # SNAC: levels at different rates, stored as rows at the coarse rate
        self._multirate = model if isinstance(model, MultiRateCodecModel) else None
        self._noisy = model if isinstance(model, NoisyDecoderModel) else None
        # NeuCodec: codes whole frames only, as its reference (interface.py)
        self.whole_frames_only = bool(getattr(model, "whole_frames_only", False))
        # NeuCodec: audio out at another rate than in (a whole number of samples a frame)
        self.output_sample_rate = model.output_sample_rate if isinstance(model, ResamplingDecoderModel) \
            else self.config.sample_rate
        self.output_hop_length = self.hop_length * self.output_sample_rate // self.sample_rate
        if self.output_hop_length * self.sample_rate != self.hop_length * self.output_sample_rate:
            raise UserError(f"model '{self.name}' decodes to {self.output_sample_rate} Hz, which is not a whole "
                            f"number of samples per frame: rvqtool cannot run it")
        self.windowing = Windowing.for_model(model, chunk_seconds)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def streaming(self) -> bool:
        """Whether long audio goes through the model's streams (not windows)."""
        return self._streaming is not None

    @property
    def multiples(self) -> tuple[int, ...] | None:
        """Codes per coarse frame of each level of a multi-rate model (SNAC 24 kHz: 1, 2, 4); None
        for one code per frame at every level."""
        return None if self._multirate is None else tuple(self._multirate.multiples)

    def rows(self, levels: int) -> int:
        """Rows of the codes of the first `levels` levels: one per level, but for a multi-rate model."""
        return levels if self._multirate is None else self._multirate.rows(levels)

    def frames(self, samples: int) -> int:
        """Frames of the codes of `samples` samples: whole frames, in whole units of a multi-rate
        model's padding (SNAC 32/44 kHz: 4 frames); only the whole frames of a model that codes
        no partial frame (NeuCodec)."""
        frames = samples // self.hop_length if self.whole_frames_only else math.ceil(samples / self.hop_length)
        multiple = 1 if self._multirate is None else self._multirate.frame_multiple
        return -(-frames // multiple) * multiple

    def bandwidth_kbps(self, levels: int) -> float:
        """Bitrate of the first `levels` levels: frame rate x rows x bits per code."""
        return self.config.bandwidth_kbps(self.rows(levels))

    def levels_for(self, n_q: int | None = None, bandwidth: float | None = None) -> int:
        """Levels to use: `n_q`, or the most that fit `bandwidth` kbps, or all of them."""
        if n_q is not None and bandwidth is not None:
            raise UsageError("give either --n-q or --bandwidth, not both")
        if bandwidth is not None:
            if bandwidth <= 0:
                raise UsageError(f"--bandwidth must be positive, got {bandwidth}")
            one_level = self.bandwidth_kbps(1)
            if bandwidth < one_level - 1e-9:  # else it would silently mean one level, at a higher rate
                raise UsageError(f"--bandwidth {bandwidth:g} is below one level of this model ({one_level:g} kbps): "
                                 f"pass --bandwidth {one_level:g} or more, or --n-q 1")
            if self._multirate is not None:
                return max(n for n in range(1, self.config.n_quantizers + 1)
                           if self.bandwidth_kbps(n) <= bandwidth + 1e-9)
            return self.config.n_q_for_bandwidth(bandwidth)
        if n_q is None:
            return self.config.n_quantizers
        if not 1 <= n_q <= self.config.n_quantizers:
            raise UsageError(f"--n-q must be between 1 and {self.config.n_quantizers}, got {n_q}")
        return n_q

    # ---- encode --------------------------------------------------------------------------
    def encode(self, wav: np.ndarray, n_q: int | None = None, channel_mode: str = "split",
               source_sample_rate: int | None = None) -> Codes:
        """Audio at the model's rate, [samples] or [channels, samples] (each channel encoded on its
        own) -> Codes [channels, n_q, T]."""
        wav = np.asarray(wav, dtype=np.float32)
        wav = wav[None] if wav.ndim == 1 else wav
        if wav.ndim != 2 or wav.shape[1] == 0:
            raise UserError(f"audio must be [samples] or [channels, samples] with samples > 0, got {wav.shape}")
        if not np.isfinite(wav).all():
            raise UserError("audio holds NaN or infinite samples")
        return self.encode_blocks([wav], n_q, channel_mode, source_sample_rate or self.sample_rate)

    def encode_file(self, path: str | Path, n_q: int | None = None, channel_mode: str = "mono") -> Codes:
        """Stream a file (any format soundfile reads, any rate, any length) into codes."""
        check_channel_mode(channel_mode)
        stereo_model = self.config.channels == 2
        info, blocks = open_audio(path, self.sample_rate, mono=channel_mode == "mono" and not stereo_model)
        return self.encode_blocks(blocks, n_q, channel_mode, info.sample_rate)

    def encode_file_to(self, path: str | Path, target: str | Path, n_q: int | None = None,
                       channel_mode: str = "mono") -> None:
        """Stream a file into a code file window by window (what `rvq encode` does): the codes wait
        in a temporary file, not in memory, so memory stays flat whatever the file's length. The
        output is the same bytes as `save_codes(encode_file(...))`."""
        if self.whole_input:  # one pass over the whole input anyway
            save_codes(self.encode_file(path, n_q, channel_mode), target)
            return
        check_channel_mode(channel_mode)
        stereo_model = self.config.channels == 2
        info, blocks = open_audio(path, self.sample_rate, mono=channel_mode == "mono" and not stereo_model)
        try:
            spool = CodeSpool(code_dtype(self.config.codebook_size))
        except OSError as exc:
            raise UserError(f"{target}: cannot write (temporary codes: {exc.strerror or exc})")
        try:
            meta = self._encode_stream(blocks, self.levels_for(n_q), channel_mode, info.sample_rate, spool.append)
            save_spooled(spool, meta, target)
        except OSError as exc:  # the spool's disk is full
            raise UserError(f"{target}: cannot write (temporary codes: {exc.strerror or exc})")
        finally:
            spool.close()

    @torch.inference_mode()
    def encode_blocks(self, blocks: Iterable[np.ndarray], n_q: int | None, channel_mode: str,
                      source_sample_rate: int) -> Codes:
        """Encode audio arriving in blocks [channels, n]; memory stays bounded by the window size
        (and the codes, which are returned)."""
        n_q = self.levels_for(n_q)
        if self.whole_input:
            return self._encode_whole(blocks, n_q, channel_mode, source_sample_rate)
        pieces: list[np.ndarray] = []
        meta = self._encode_stream(blocks, n_q, channel_mode, source_sample_rate, pieces.append)
        return Codes(np.concatenate(pieces, axis=-1), meta)

    @torch.inference_mode()
    def _encode_stream(self, blocks: Iterable[np.ndarray], n_q: int, channel_mode: str, source_sample_rate: int,
                       sink: Callable[[np.ndarray], None]) -> CodesMeta:
        """Encode blocks window by window, handing each window's codes [channels, n_q, frames] to
        `sink` in frame order; the metadata once the length is known."""
        for latent, length in self.latent_windows(blocks):
            sink(self.model.quantize(latent, n_q).cpu().numpy())
        return self.codes_meta(n_q, length, latent.shape[0], channel_mode, source_sample_rate)

    def codes_meta(self, n_q: int, length: int, channels: int, channel_mode: str, source_sample_rate: int,
                   segment_length: int = 0, segment_stride: int = 0, scales: list[float] | None = None) -> CodesMeta:
        """The metadata of `n_q` levels of codes of `length` samples made by this codec."""
        multirate = self._multirate
        rows, levels, multiple = (n_q, 0, 1) if multirate is None else (multirate.rows(n_q), n_q, multirate.frame_multiple)
        return CodesMeta(self.name, self.sha256, self.sample_rate, self.frame_rate, self.hop_length, rows,
                         self.config.codebook_size, length, channels, channel_mode, int(source_sample_rate),
                         self.model_hint, segment_length, segment_stride, scales, levels, multiple,
                         self._recorded_output_rate)

    @property
    def _recorded_output_rate(self) -> int:
        """What code files record as `output_sample_rate`: 0 where it is the input's rate (their
        files then stay as they were)."""
        return 0 if self.output_sample_rate == self.sample_rate else self.output_sample_rate

    @torch.inference_mode()
    def latent_windows(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[torch.Tensor, int]]:
        """The latents [channels, D, frames] that encoding quantises, window by window in frame order,
        of audio arriving in blocks [channels, n]; each with the samples read so far, which after
        the last window is the whole length. Only a window's audio is held. A whole-input model
        gives one pass over the whole signal (without a segmented model's normalisation)."""
        if self.whole_input:
            wav = self._whole_signal(blocks)
            yield self.model.encode_latents(wav), wav.shape[-1]
            return
        if self._streaming is not None:
            yield from self._streamed_latents(blocks)
            return
        windows, hop = self.windowing, self.hop_length
        buffer, buffer_start, total, next_frame = None, 0, 0, 0
        for block in blocks:
            buffer = block if buffer is None else np.concatenate([buffer, block], axis=1)
            total += block.shape[1]
            while windows.full_window_ready(next_frame, total):
                window = windows.encode_window(next_frame, math.ceil(total / hop))
                yield self._window_latents(buffer, buffer_start, window), total
                next_frame = window.end_frame
                drop = windows.first_sample_needed(next_frame) - buffer_start
                buffer, buffer_start = buffer[:, drop:], buffer_start + drop
        if buffer is None or total == 0:
            raise UserError("audio has no samples")
        n_frames = math.ceil(total / hop)
        buffer = np.pad(buffer, ((0, 0), (0, n_frames * hop - total)))
        while next_frame < n_frames:
            window = windows.encode_window(next_frame, n_frames)
            yield self._window_latents(buffer, buffer_start, window), total
            next_frame = window.end_frame

    def _streamed_latents(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[torch.Tensor, int]]:
        """`latent_windows` of a streaming model: one encoder stream for all channels, fed
        `chunk_frames` frames at a time (so the pieces do not depend on the reader's blocks),
        the last piece zero-padded to whole frames as the whole pass pads it."""
        step, hop = self.windowing.chunk_frames * self.hop_length, self.hop_length
        stream, buffer, total = None, None, 0
        for block in blocks:
            if not block.shape[1]:
                continue
            buffer = block if buffer is None else np.concatenate([buffer, block], axis=1)
            total += block.shape[1]
            while buffer.shape[1] >= step:
                stream = stream or self._streaming.encoder_stream(buffer.shape[0])
                yield stream.feed(self._as_batch(buffer[:, :step])), total
                buffer = buffer[:, step:]
        if buffer is None:
            raise UserError("audio has no samples")
        if buffer.shape[1]:
            stream = stream or self._streaming.encoder_stream(buffer.shape[0])
            yield stream.feed(self._as_batch(np.pad(buffer, ((0, 0), (0, -buffer.shape[1] % hop))))), total

    def _as_batch(self, audio: np.ndarray) -> torch.Tensor:
        """Audio [channels, n] -> the model's input [channels, 1, n] on its device."""
        return torch.from_numpy(np.ascontiguousarray(audio)).to(self.device)[:, None, :]

    def _encode_whole(self, blocks: Iterable[np.ndarray], n_q: int, channel_mode: str,
                      source_sample_rate: int) -> Codes:
        """One pass over the whole signal (memory grows with its length, as in the reference)."""
        wav, segmented = self._whole_signal(blocks), self._segmented
        if self.config.channels == 2:
            channel_mode = "stereo"
        if segmented is not None:
            codes, scales = segmented.encode_segments(wav, n_q)
            segment_length, segment_stride = segmented.segment_length or 0, segmented.segment_stride or 0
        else:
            codes, scales = self.model.quantize(self.model.encode_latents(wav), n_q), None
            segment_length = segment_stride = 0
        # a model that codes whole frames only (NeuCodec) leaves the samples after its last frame
        # without a code: the codes cover those frames' samples
        length = self.frames(wav.shape[-1]) * self.hop_length if self.whole_frames_only else wav.shape[-1]
        meta = self.codes_meta(n_q, length, wav.shape[0], channel_mode, source_sample_rate,
                               segment_length, segment_stride, scales)
        return Codes(codes.cpu().numpy(), meta)

    def _whole_signal(self, blocks: Iterable[np.ndarray]) -> torch.Tensor:
        """The blocks joined and shaped for the model: [channels, 1, samples], each channel on its
        own, or [1, 2, samples] for a stereo model, which codes both channels together."""
        parts = [b for b in blocks if b.shape[1]]
        if not parts:
            raise UserError("audio has no samples")
        wav = torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, axis=1)))
        if self.config.channels == 2:
            if wav.shape[0] > 2:
                raise UserError(f"model '{self.name}' codes stereo audio; got {wav.shape[0]} channels")
            return wav.expand(2, -1)[None].to(self.device)
        return wav[:, None, :].to(self.device)

    def _window_latents(self, buffer: np.ndarray, buffer_start: int, window: EncodeWindow) -> torch.Tensor:
        """The latents [channels, D, frames] of one window's own frames; `buffer` holds the samples
        from `buffer_start` on."""
        audio = buffer[:, window.first_sample - buffer_start: window.end_sample - buffer_start]
        offset = window.first_sample // self.hop_length
        per_frame = self.latent_frames_per_frame
        return self.model.encode_latents(self._as_batch(audio))[
            ..., (window.first_frame - offset) * per_frame: (window.end_frame - offset) * per_frame]

    @property
    def latent_frames_per_frame(self) -> int:
        """Latent frames per frame of codes: more than one for a multi-rate model (SNAC's finest rate)."""
        return 1 if self._multirate is None else self._multirate.latent_frames_per_frame

    # ---- decode --------------------------------------------------------------------------
    def check(self, codes: Codes | NpyCodes, name: str = "codes") -> None:
        """Refuse codes that this model did not make."""
        meta = codes.meta
        if meta.model_sha256 != self.sha256:
            version = shipped_by_sha256(meta.model_sha256)
            if version is not None:
                raise UserError(f"{name}: made by {version} ({meta.model_sha256[:12]}), not by '{self.name}' "
                                f"({self.sha256[:12]}): pass --model {version}")
            raise UserError(f"{name}: made by model '{meta.model}' ({meta.model_sha256[:12]}), not by "
                            f"'{self.name}' ({self.sha256[:12]}); decode with --model pointing at that model")
        multiple = 1 if self._multirate is None else self._multirate.frame_multiple
        if meta.codebook_size != self.config.codebook_size or meta.level_count > self.config.n_quantizers \
                or meta.n_q != self.rows(meta.level_count) or meta.frame_multiple != multiple:
            raise UserError(f"{name}: codebook size / levels do not fit model '{self.name}'")
        if meta.output_sample_rate != self._recorded_output_rate:
            raise UserError(f"{name}: its metadata says they decode to {meta.decoded_sample_rate} Hz, model "
                            f"'{self.name}' decodes to {self.output_sample_rate} Hz")

    def decode(self, codes: Codes | NpyCodes, n_q: int | None = None) -> np.ndarray:
        """Codes -> audio [channels, length] at the model's output rate (`output_sample_rate`: its
        rate, but NeuCodec's 24 kHz); `n_q` decodes only the first levels."""
        return np.concatenate(list(self.decode_blocks(codes, n_q)), axis=1)

    @torch.inference_mode()
    def decode_blocks(self, codes: Codes | NpyCodes, n_q: int | None = None) -> Iterator[np.ndarray]:
        """Decode window by window, yielding audio blocks [channels, n]; only a window's codes are
        converted at a time, and `NpyCodes` read only a window's from the file (flat memory)."""
        self.check(codes)
        levels = codes.meta.level_count if n_q is None else n_q
        if not 1 <= levels <= codes.meta.level_count:
            raise UserError(f"--n-q must be between 1 and {codes.meta.level_count} for these codes, got {levels}")

        def read(start: int, stop: int) -> torch.Tensor:
            return torch.from_numpy(self._level_frames(codes, start, stop, levels)).long().to(self.device)

        if self.whole_input:
            window = read(0, codes.frames)
            if self._segmented is not None:
                wav = self._segmented.decode_segments(window, codes.meta.length, codes.meta.scales)
            else:
                wav = self.model.decode_latents(self.model.dequantize(window))[..., :codes.meta.decoded_length]
            yield wav.reshape(-1, wav.shape[-1]).cpu().numpy()   # [streams x model channels, length]
            return
        hop, remaining = self.output_hop_length, codes.meta.decoded_length
        if self._streaming is not None:
            stream = self._streaming.decoder_stream(codes.meta.channels)
            for first, end in self.windowing.stream_pieces(codes.frames):
                block = stream.feed(self.model.dequantize(read(first, end)))[:, 0].cpu().numpy()[:, :remaining]
                remaining -= block.shape[1]
                yield block
            return
        for first, end, start, stop in self.windowing.decode_windows(codes.frames):
            latents = self.model.dequantize(read(start, stop))
            if self._noisy is not None:
                wav = self._noisy.decode_window(latents, start)[:, 0]
            else:
                wav = self.model.decode_latents(latents)[:, 0]   # [channels, samples]
            block = wav[:, (first - start) * hop: (end - start) * hop].cpu().numpy()
            block = block[:, :remaining]
            remaining -= block.shape[1]
            yield block

    def decode_to_file(self, codes: Codes | NpyCodes, path: Path, n_q: int | None = None) -> None:
        """Decode straight into an audio file, block by block, written atomically."""
        fmt, subtype = output_format(path)
        try:
            with atomic_path(path) as tmp:
                channels = codes.meta.channels * self.config.channels
                with sf.SoundFile(str(tmp), "w", self.output_sample_rate, channels, format=fmt,
                                  subtype=subtype) as out:
                    for block in self.decode_blocks(codes, n_q):
                        out.write(np.clip(block, -1.0, 1.0).T)
        except OSError as exc:
            raise UserError(f"{path}: cannot write ({exc.strerror or exc})")

    def _level_frames(self, codes: Codes | NpyCodes, start: int, stop: int, levels: int) -> np.ndarray:
        """Codes of the first `levels` levels, frames start..stop: a prefix of the rows, or for a
        multi-rate model the rows of those levels (not a prefix)."""
        if self._multirate is None or levels == codes.meta.level_count:
            return _frames(codes, start, stop, self.rows(levels))
        return _frames(codes, start, stop, codes.meta.n_q)[:, self._multirate.level_rows(levels)]


def _frames(codes: Codes | NpyCodes, start: int, stop: int, levels: int) -> np.ndarray:
    """Codes [channels, levels, stop - start] of frames start..stop, contiguous."""
    if isinstance(codes, NpyCodes):
        return codes.window(start, stop, levels)
    return np.ascontiguousarray(codes.codes[:, :levels, start:stop])
