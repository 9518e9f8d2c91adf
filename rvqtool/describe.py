"""`rvq info`: the facts about an audio file, a code file, a model or the shipped models, as an
ordered dict."""
from __future__ import annotations

from pathlib import Path

from rvqtool.errors import UserError


def describe(path: str) -> dict:
    from rvqtool.registry import parse_spec, shipped_version

    p = Path(path)
    if parse_spec(path) is not None:   # KIND:PATH, a foreign checkpoint
        return _foreign_model(path)
    if path.endswith(".npy.json"):  # a code file's sidecar: describe the code file
        return _codes(path[: -len(".json")])
    if shipped_version(path) is not None or p.suffix in (".safetensors", ".json"):
        return _model(path)
    if path == "-" or p.suffix in (".npy", ".rvq"):
        return _codes(path)
    return _audio(path)


def _audio(path: str) -> dict:
    from rvqtool.io.audio import audio_info

    info = audio_info(path)
    return {"type": "audio", "path": path, "format": f"{info.format} ({info.subtype})",
            "sample_rate": info.sample_rate, "channels": info.channels, "frames": info.frames,
            "duration_s": round(info.seconds, 3)}


def _codes(path: str) -> dict:
    from rvqtool.registry import shipped_by_sha256
    from rvqtool.io.codes import load_codes, packed_size, read_header

    if path != "-" and Path(path).suffix == ".npy":  # its codes are checked too (in range, the pair's hash)
        codes = load_codes(path)
        m, shape = codes.meta, codes.codes.shape
    else:  # a packed file: its header and size, never its payload (a 20 MB .rvq took 2.9 GB to unpack)
        m, shape = read_header(path)
    seconds = m.length / m.sample_rate
    packed = packed_size(m, shape)
    shipped = shipped_by_sha256(m.model_sha256)  # what decodes them, whatever name they record
    return {"type": "codes", "path": path, "model": m.model, "model_sha256": m.model_sha256,
            **({"shipped_model": shipped} if shipped else {}),
            "shape": list(shape if m.channels > 1 else shape[1:]),
            "channels": m.channels, "channel_mode": m.channel_mode, "n_q": m.n_q,
            "codebook_size": m.codebook_size, "bits_per_code": m.bits_per_code,
            "frame_rate_hz": m.frame_rate, "frames": shape[-1], "sample_rate": m.sample_rate,
            **_output_rate(m.decoded_sample_rate, m.sample_rate),
            "source_sample_rate": m.source_sample_rate, "duration_s": round(seconds, 3),
            "bitrate_kbps": round(m.bitrate_kbps(), 3),
            "packed_bytes": packed, "packed_kbps": round(packed * 8 / seconds / 1000, 3),
            **({"levels": m.levels, "layout": _rows_line(m.frame_rate, _doubling(m.levels, m.n_q), m.n_q)}
               if m.levels else {})}


def _output_rate(output: int, rate: int) -> dict:
    """The rate decoded audio comes at, where it is not the codes' (NeuCodec: 24 kHz from 16 kHz)."""
    return {} if output == rate else {"output_sample_rate": output}


def _doubling(levels: int, rows: int) -> tuple[int, ...] | None:
    """The codes per coarse frame of each level, when a code file's rows say it (each level twice
    the rate of the one before, as SNAC's published models have it); None otherwise."""
    return tuple(2 ** level for level in range(levels)) if rows == 2 ** levels - 1 else None


def _rows_line(frame_rate: float, multiples: tuple[int, ...] | None, rows: int) -> str:
    """How multi-rate levels sit in the rows of a code file, and what --n-q counts."""
    order = "Orpheus order" if multiples == (1, 2, 4) else "depth first"
    if multiples is None:
        return f"levels at different rates stored as {rows} rows per {frame_rate:.2f} Hz frame; --n-q counts levels"
    rates = " / ".join(f"{frame_rate * m:.2f}" for m in multiples)
    return (f"{len(multiples)} levels at {rates} Hz stored as {rows} rows per {frame_rate:.2f} Hz frame "
            f"({order}); --n-q counts levels")


def _foreign_model(spec: str) -> dict:
    """A KIND:PATH model: loaded, as decoding would load it."""
    from rvqtool.codec import load_codec

    codec = load_codec(spec)
    cfg, levels = codec.config, codec.config.n_quantizers
    facts = {"type": "model", "path": str(codec.path), "name": codec.name, "sha256": codec.sha256,
             "sample_rate": cfg.sample_rate, **_output_rate(codec.output_sample_rate, cfg.sample_rate),
             "channels": cfg.channels, "hop_length": cfg.hop_length, "frame_rate_hz": cfg.frame_rate,
             "n_quantizers": levels, "codebook_size": cfg.codebook_size,
             "bandwidths_kbps": [round(codec.bandwidth_kbps(n), 3) for n in range(1, levels + 1)],
             "windows": "whole input" if codec.whole_input else
                        "streamed" if codec.streaming else f"{codec.windowing.chunk_frames} frames"}
    if codec.multiples is not None:
        facts["layout"] = _rows_line(cfg.frame_rate, codec.multiples, codec.rows(levels))
    return facts


def _model(path: str) -> dict:
    from rvqtool.checkpoint import read_meta
    from rvqtool.registry import model_path, shipped_aliases, shipped_by_sha256, shipped_version
    from rvqtool.config import CodecConfig

    weights = model_path(path)
    meta = read_meta(weights)
    cfg = CodecConfig.from_dict(meta["config"])
    if not weights.exists():
        raise UserError(f"{weights}: model weights not found")
    name = shipped_version(path) or meta["name"]
    facts = {"type": "model", "path": str(weights), "name": name, "sha256": meta["sha256"],
             "size_mb": round(weights.stat().st_size / 1e6, 2), "sample_rate": cfg.sample_rate,
             "channels": cfg.channels, "hop_length": cfg.hop_length, "frame_rate_hz": cfg.frame_rate,
             "n_quantizers": cfg.n_quantizers, "codebook_size": cfg.codebook_size, "dimension": cfg.dimension,
             "bandwidths_kbps": [round(cfg.bandwidth_kbps(n), 3) for n in range(1, cfg.n_quantizers + 1)],
             "encoder_filters": cfg.encoder_filters, "decoder": cfg.decoder, "decoder_filters": cfg.decoder_filters,
             "lstm_layers": cfg.lstm_layers, "causal": cfg.causal}
    version = shipped_by_sha256(meta["sha256"])
    if version is not None:
        facts["shipped_as"] = version
        facts["aliases"] = [alias for alias, newest in shipped_aliases().items() if newest == version]
    facts.update({k: v for k, v in meta.items() if k not in ("name", "sha256", "config")})
    return facts


def shipped() -> dict:
    """The models that come with rvqtool: each alias -> its version, then one line per version."""
    from rvqtool.checkpoint import read_meta
    from rvqtool.registry import SHIPPED_DIR, SHIPPED_VERSIONS, shipped_aliases
    from rvqtool.config import CodecConfig

    facts: dict = {"type": "shipped models", **shipped_aliases()}
    for version in SHIPPED_VERSIONS:
        meta = read_meta(SHIPPED_DIR / f"{version}.json")
        cfg = CodecConfig.from_dict(meta["config"])
        channels = "mono" if cfg.channels == 1 else f"{cfg.channels} channels"
        facts[version] = (f"{meta['sha256'][:12]}: {cfg.sample_rate} Hz {channels}, "
                          f"{cfg.n_quantizers} levels x {cfg.codebook_size} codes, "
                          f"{cfg.bandwidth_kbps(1):g}-{cfg.bandwidth_kbps(cfg.n_quantizers):g} kbps")
    return facts
