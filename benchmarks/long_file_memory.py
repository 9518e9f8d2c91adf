#!/usr/bin/env python3
"""Peak memory and speed of `rvq encode` and `rvq decode` on long files (24 kHz mono 16-bit WAV made
from the shipped clips, end to end), and a check that a long file's first minute of codes equals
that minute encoded on its own.

Each file is written block by block into a temporary directory (never held in memory) and deleted
after its row; `rvq encode FILE -o FILE.npy` and `rvq decode FILE.npy -o OUT.wav` run as child
processes, and each one's own peak RSS comes from os.wait4. Prints a Markdown table.

Usage: python benchmarks/long_file_memory.py [--minutes 10,60,240] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from rvqtool import load_codec, load_codes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.audio import CLIPS  # noqa: E402

RVQ = [sys.executable, "-m", "rvqtool.cli"]


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def write_long(path: Path, minutes: float) -> None:
    clip = np.concatenate([sf.read(p, dtype="float32")[0] for p in CLIPS.values()])
    total = int(minutes * 60 * 24000)
    with sf.SoundFile(path, "w", 24000, 1, subtype="PCM_16") as f:
        for start in range(0, total, len(clip)):
            f.write(clip[: min(len(clip), total - start)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="10,60,240", help="comma-separated lengths")
    parser.add_argument("--dir", default=None, help="where the temporary files go (default: $TMPDIR)")
    args = parser.parse_args()
    print("| audio | encode s (x real time) | encode peak RSS MB | decode s (x real time) | decode peak RSS MB "
          "| frames | first minute = alone |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for minutes in (float(m) for m in args.minutes.split(",")):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            wav, npy, out = Path(tmp) / "long.wav", Path(tmp) / "long.npy", Path(tmp) / "decoded.wav"
            write_long(wav, minutes)
            enc_s, enc_mb = run([*RVQ, "encode", str(wav), "-o", str(npy)])
            dec_s, dec_mb = run([*RVQ, "decode", str(npy), "-o", str(out)])
            codes = load_codes(npy)
            excerpt = load_codec("default").encode(sf.read(wav, frames=60 * 24000, dtype="float32")[0])
            frames = excerpt.frames - 20  # the excerpt's last frames see its end, not the rest of the file
            same = np.array_equal(codes.codes[..., :frames], excerpt.codes[..., :frames])
            seconds = minutes * 60
        print(f"| {minutes:g} min | {enc_s:.0f} ({seconds / enc_s:.0f}x) | {enc_mb:.0f} | {dec_s:.0f} "
              f"({seconds / dec_s:.0f}x) | {dec_mb:.0f} | {codes.frames} | {same} |", flush=True)


if __name__ == "__main__":
    main()
