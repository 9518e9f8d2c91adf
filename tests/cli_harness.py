"""Running the `rvq` command line from tests, fast.

Each `rvq` process pays ~2-3 s of imports (torch), which would make a thorough CLI suite take
minutes. So `Rvq` starts one server process that imports rvqtool (torch included) once and then
forks a fresh child per command: the child gets its own stdin/stdout/stderr file descriptors,
cwd and argv, runs the real entry point `rvqtool.cli:main` (what the `rvq` console
script calls), and exits with its exit status. What a test sees -- exit code, the bytes on
stdout and stderr, the files written -- is what a separate `rvq` process would produce.

Set RVQ_TEST_SUBPROCESS=1 to run every command as its own `python -m rvqtool.cli` process
instead (slow; a check on the server itself; also what happens where there is no os.fork). A few tests always use real processes (the
console script, `python -m rvqtool.cli`, pipes between two processes).

Run as a script (`python cli_harness.py --serve`) this file is the server.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

TIMEOUT_S = 180
# keep the CLI runs light beside other work on the machine; results do not depend on threads
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "COLUMNS": "80"}


@dataclass(repr=False)
class Result:
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __repr__(self) -> str:  # shown by pytest when an assertion about a run fails
        return (f"rvq {' '.join(self.argv)} -> rc {self.rc}, {len(self.stdout)} bytes on stdout\n"
                f"--- stderr ---\n{self.stderr}")


def real_rvq() -> list[str]:
    """The installed `rvq` console script (beside this interpreter), else `python -m rvqtool.cli`."""
    script = shutil.which("rvq", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "rvqtool.cli"]


def env() -> dict[str, str]:
    return {**os.environ, **ENV}


class Rvq:
    """`rvq(*args, cwd=..., stdin=b"...")` -> Result; see the module docstring."""

    def __init__(self, real: bool | None = None):
        if real is None:
            real = os.environ.get("RVQ_TEST_SUBPROCESS") == "1" or not hasattr(os, "fork")
        self.real = real
        self._dir = Path(tempfile.mkdtemp(prefix="rvq-cli-"))
        self._server = None
        if not self.real:
            self._server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, env=env(), cwd=self._dir)
        self._count = 0

    def __call__(self, *args: str | Path, cwd: str | Path, stdin: bytes | None = None) -> Result:
        argv = [str(a) for a in args]
        if self.real:
            proc = subprocess.run([sys.executable, "-m", "rvqtool.cli", *argv], cwd=cwd, env=env(),
                                  input=stdin if stdin is not None else b"", capture_output=True,
                                  timeout=TIMEOUT_S)
            return Result(argv, proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))
        self._count += 1
        base = self._dir / str(self._count)
        stdin_path = None
        if stdin is not None:
            stdin_path = base.with_suffix(".in")
            stdin_path.write_bytes(stdin)
        request = {"argv": argv, "cwd": str(cwd), "stdin": str(stdin_path) if stdin_path else None,
                   "stdout": str(base.with_suffix(".out")), "stderr": str(base.with_suffix(".err"))}
        self._server.stdin.write((json.dumps(request) + "\n").encode())
        self._server.stdin.flush()
        reply = self._server.stdout.readline()
        if not reply:
            raise RuntimeError("the rvq test server died")
        rc = json.loads(reply)["rc"]
        return Result(argv, rc, Path(request["stdout"]).read_bytes(),
                      Path(request["stderr"]).read_text(errors="replace"))

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(timeout=30)
        shutil.rmtree(self._dir, ignore_errors=True)


# ---- the server --------------------------------------------------------------------------------
def _serve() -> None:
    import signal
    import time
    import traceback

    import rvqtool.file_jobs  # noqa: F401  -- everything a command imports lazily, paid for once here
    import rvqtool.cli
    import rvqtool.codec  # noqa: F401
    import rvqtool.describe  # noqa: F401

    channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
    for line in channel_in:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: one `rvq` run
            code = 1
            try:
                os.chdir(req["cwd"])
                for fd, path, flags in ((0, req["stdin"] or os.devnull, os.O_RDONLY),
                                        (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                        (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                    new = os.open(path, flags, 0o644)
                    os.dup2(new, fd)
                    os.close(new)
                # fresh Python streams: the server's may hold buffered protocol bytes
                sys.stdin = open(0, "r", closefd=False)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                sys.argv = ["rvq", *req["argv"]]
                try:
                    rvqtool.cli.main()
                    code = 0
                except SystemExit as exc:  # what the interpreter would make of it
                    if exc.code is None:
                        code = 0
                    elif isinstance(exc.code, int):
                        code = exc.code
                    else:
                        print(exc.code, file=sys.stderr)
                        code = 1
                except BaseException:  # an uncaught exception: the interpreter prints the traceback
                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code & 0xFF)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        rc = os.waitstatus_to_exitcode(status)
        channel_out.write((json.dumps({"rc": rc}) + "\n").encode())
        channel_out.flush()


# ---- audio made in the tests ------------------------------------------------------------------
def harmonics(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """[frames, channels] float32: harmonics under an envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    out = []
    for c in range(channels):
        f0 = 140.0 * (1 + 0.25 * c)
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6) / k for k in range(1, 8))
        out.append(0.15 * envelope * x + 0.003 * rng.standard_normal(len(t)))
    return np.stack(out, axis=1).astype(np.float32)


def write_audio(path: Path, seconds: float = 1.0, sample_rate: int = 24000, channels: int = 1,
                seed: int = 0, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), harmonics(seconds, sample_rate, channels, seed), sample_rate, subtype=subtype)
    return path


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below `root` (relative path -> (inode, mtime_ns)): a snapshot to compare. The
    `.lock` a directory job keeps (an empty file it flocks) is no output and is left out."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and not (p.name == ".lock" and p.parent == root)}


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
