#!/usr/bin/env python3
"""Peak memory and speed of `rvq encode` on a long file (default: 1 hour, 24 kHz mono 16-bit WAV),
and a check that its codes equal those of a short excerpt encoded on its own.

The file is written block by block into a temp dir (never held in memory), then `rvq encode` runs
as a child process; its peak RSS comes from getrusage(RUSAGE_CHILDREN).

Usage: python benchmarks/long_file_memory.py [--minutes 60]
"""
from __future__ import annotations

import argparse
import resource
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    clip = np.concatenate([sf.read(p, dtype="float32")[0] for p in CLIPS.values()])
    total = int(args.minutes * 60 * 24000)
    with tempfile.TemporaryDirectory() as tmp:
        wav, out = Path(tmp) / "long.wav", Path(tmp) / "long.npy"
        with sf.SoundFile(wav, "w", 24000, 1, subtype="PCM_16") as f:
            for start in range(0, total, len(clip)):
                f.write(clip[: min(len(clip), total - start)])
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rvqtool.cli", "encode", str(wav), "-o", str(out)], check=True)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        codes = load_codes(out)
        excerpt = load_codec("default").encode(sf.read(wav, frames=60 * 24000, dtype="float32")[0])
        frames = excerpt.frames - 20  # the excerpt's last frames see its end, not the rest of the file
        same = np.array_equal(codes.codes[..., :frames], excerpt.codes[..., :frames])
    print(f"{args.minutes:g} min of audio: encoded in {seconds:.0f} s ({args.minutes * 60 / seconds:.1f}x real time, "
          f"incl. start-up), peak RSS {peak_mb:.0f} MB, {codes.frames} frames; "
          f"first minute equal to encoding it alone: {same}")


if __name__ == "__main__":
    main()
