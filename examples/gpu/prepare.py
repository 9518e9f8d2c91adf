"""Pack what the H200 training run needs into build/gpu/ (it travels with the working tree, 64 MiB at
most): a FLAC subset of the training corpus, speech first, and the wheels the GPU image lacks.

    .venv/bin/python examples/gpu/prepare.py build/default-model/train [--budget-mib 38]
    .venv/bin/python examples/gpu/prepare.py --wheels-only   # the wheels alone (benchmarks/gpu_check.sh)

Files are taken round-robin across the corpus's categories in the manifest's order, two speech
files per music/env file, until the byte budget is spent, so every category is present at any budget.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import subprocess
import sys
from pathlib import Path

import soundfile as sf

OUT = Path("build/gpu")
# what the GPU image (python 3.12, torch, numpy, typer, rich, einops, safetensors, numba) lacks
WHEELS = ["soundfile==0.14.0", "cffi==2.0.0", "pycparser==2.23", "soxr==1.0.0",
          # benchmarks/gpu_check.sh runs the CUDA kernel tests with pytest
          "pytest==9.2.0", "pluggy==1.7.0", "iniconfig==2.3.1", "packaging==26.4", "pygments==2.21.0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?")
    parser.add_argument("--budget-mib", type=float, default=38.0)
    parser.add_argument("--wheels-only", action="store_true", help="only download the wheels")
    args = parser.parse_args()
    if not args.wheels_only:
        if args.corpus is None:
            parser.error("give the corpus directory, or --wheels-only")
        pack_corpus(args.corpus, args.budget_mib)
    download_wheels()


def pack_corpus(corpus: Path, budget_mib: float) -> None:
    rows = list(csv.DictReader(open(corpus / "manifest.csv")))
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    speech = iter(by_category.get("speech", []))   # the same iterator twice: two speech files a round
    queues = [speech, speech] + [iter(v) for k, v in by_category.items() if k != "speech"]
    data = OUT / "data"
    data.mkdir(parents=True, exist_ok=True)
    used, seconds, taken = 0, 0.0, set()
    budget = int(budget_mib * 2**20)
    for row in (r for r in itertools.chain.from_iterable(itertools.zip_longest(*queues)) if r is not None):
        if row["file"] in taken:
            continue
        target = data / (row["file"].replace("/", "__").rsplit(".", 1)[0] + ".flac")
        wav, rate = sf.read(corpus / row["file"], dtype="int16")
        sf.write(target, wav, rate, format="FLAC", subtype="PCM_16")
        if used + target.stat().st_size > budget:
            target.unlink()
            continue
        used += target.stat().st_size
        seconds += len(wav) / rate
        taken.add(row["file"])
    print(f"{len(taken)} files, {seconds / 60:.1f} min, {used / 2**20:.1f} MiB in {data}")


def download_wheels() -> None:
    wheels = OUT / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "-d", str(wheels), *WHEELS], check=True)
    print(f"wheels in {wheels}: {sorted(p.name for p in wheels.iterdir())}")


if __name__ == "__main__":
    main()
