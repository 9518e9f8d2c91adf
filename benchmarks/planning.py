"""Planning and per-file overhead on corpora of many tiny files (issue 11, point 4).

For each size N (default 20k and 200k) a tree of N tiny WAVs (0.05 s, 24 kHz, in folders of
1,000) is made under /tmp and timed, in this process, through the same functions the commands use:

* `rvq encode DIR -o OUT` planning: `file_jobs.plan` (walk the tree, map every input to its output,
  refuse two inputs with one output);
* `rvq tokenize DIR -o OUT` planning: `sources.collect` (walk, ids), `plan.make_plan` (every
  file's header, shards), the plan's hash and `plan.json` written (`JobDir.adopt`).

Then both commands are run for real (`rvq` processes, 1 torch thread) on the first `--run-files`
files, and once on a single file; (time(n) - time(1)) / (n - 1) is the per-file cost of a run,
start-up (imports, model) excluded. A full run of 200k files would take hours on 2 cores (the
model itself costs ~10 ms a file), so the run is measured on a subset: its per-file cost does not
depend on N, which the planning columns show for everything that does.

    python benchmarks/planning.py                       # 20k and 200k
    python benchmarks/planning.py --sizes 20000,1000000 --run-files 0

The trees are deleted afterwards. Prints a table (seconds, and ms per 1,000 files).
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PER_FOLDER = 1000


def tiny_wav() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    sf.write(buffer, (0.1 * rng.standard_normal(1200)).astype(np.float32), 24000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def make_tree(root: Path, count: int) -> Path:
    data = tiny_wav()
    corpus = root / "corpus"
    for i in range(count):
        folder = corpus / f"{i // PER_FOLDER:05d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"{i:07d}.wav").write_bytes(data)
    return corpus


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def plan_times(corpus: Path, work: Path, codec, template) -> dict[str, float]:
    from rvqtool import file_jobs
    from rvqtool.io.audio import AUDIO_SUFFIXES
    from rvqtool.tokens import jobdir, plan as planning, sources

    out = {}
    jobs, out["encode: file_jobs.plan"] = timed(lambda: file_jobs.plan([str(corpus)], str(work / "codes"),
                                                                        AUDIO_SUFFIXES, ".npy"))
    found, out["tokenize: collect"] = timed(lambda: sources.collect([str(corpus)], AUDIO_SUFFIXES))
    options = planning.TokenOptions(shard_tokens=10_000_000)
    plan, out["tokenize: make_plan"] = timed(lambda: planning.make_plan("tokenize", found, options, template, codec))
    assert len(plan.files) == len(found) == len(jobs), (len(plan.files), len(found), len(jobs))
    _, out["tokenize: hash + plan.json"] = timed(lambda: (plan.sha256, jobdir.JobDir(work / "shards").adopt(plan)))
    _, out["tokenize: resume check"] = timed(lambda: jobdir.JobDir(work / "shards").adopt(plan))
    out["tokenize: planning total"] = sum(v for k, v in out.items() if k.startswith("tokenize"))
    return out


def run_seconds(argv: list[str], cwd: Path) -> float:
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rvqtool.cli", *argv], cwd=cwd, env=env, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"rvq {' '.join(argv)} failed: {proc.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def run_costs(corpus: Path, work: Path, files: int) -> dict[str, float]:
    """Seconds per file of real `rvq encode DIR` and `rvq tokenize` runs, start-up excluded."""
    subset, single = work / "subset", work / "single"
    for target, count in ((subset, files), (single, 1)):
        target.mkdir()
        for i, p in enumerate(sorted(corpus.rglob("*.wav"))[:count]):
            (target / p.name).write_bytes(p.read_bytes())
    out = {}
    for what, argv in (("encode", ["encode", "{src}", "-o", "{out}"]),
                       ("tokenize", ["tokenize", "{src}", "-o", "{out}"])):
        times = [run_seconds([a.format(src=src, out=work / f"{what}-{src.name}") for a in argv], work)
                 for src in (single, subset)]
        out[f"run: rvq {what}, per file"] = (times[1] - times[0]) / (files - 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,200000", help="comma-separated file counts")
    parser.add_argument("--run-files", type=int, default=1000, help="files of the real runs (0: skip)")
    args = parser.parse_args()
    import torch

    from rvqtool import load_codec
    from rvqtool.tokens import plan as planning

    torch.set_num_threads(1)
    codec = load_codec("default")
    template = planning.template_for(codec)
    results: dict[int, dict[str, float]] = {}
    for count in (int(s) for s in args.sizes.split(",")):
        root = Path(tempfile.mkdtemp(prefix=f"rvq-planning-{count}-", dir="/tmp"))
        try:
            corpus = make_tree(root, count)
            results[count] = plan_times(corpus, root, codec, template)
            if args.run_files > 1 and count == max(int(s) for s in args.sizes.split(",")):
                results[count].update(run_costs(corpus, root, min(args.run_files, count)))
            print(f"{count} files: " + ", ".join(f"{k} {v:.3f} s" for k, v in results[count].items()), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    sizes = sorted(results)
    print("\n| step | " + " | ".join(f"{n:,} files: s (ms per 1k)" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for key in results[sizes[-1]]:
        cells = []
        for n in sizes:
            value = results[n].get(key)
            if value is None:
                cells.append("")
            elif key.startswith("run:"):
                cells.append(f"{value * 1000:.1f} ms a file")
            else:
                cells.append(f"{value:.2f} ({1e6 * value / n:.1f})")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
