"""Fault injection for `rvq` runs: real SIGKILLs (and pauses) at well-defined instants.

Every file rvqtool keeps becomes visible through one `os.replace` (a temporary renamed onto its
name), so those calls are the instants at which what is on disk changes; only calls onto paths
below the run's working directory count (the tests' outputs, not a kernel cache in ~/.cache). `Faults` runs the real
entry point `rvqtool.cli:main` in a child forked from a server that imported rvqtool once (as
tests/cli_harness.py does, to skip torch's start-up per run); in the child `os.replace` is wrapped:

* `kill=(n, "before"|"after")`: the child sends itself SIGKILL just before or just after the n-th
  call (a real kill -9: no `finally`, no atexit, no flush);
* `pause=(n, "before"|"after")`: the child stops there until the test creates the release file,
  so that another job can run at exactly that point;
* `record=DIR`: after each call, a copy of the file just put in place goes to DIR/NNNNN and
  DIR/log.jsonl gets {"n", "target"}: every version of every file an uninterrupted run wrote.

The choice of instants is the test's (seeded); what happens at each is then deterministic.
Run as a script (`python faults.py --serve`) this file is the server.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cli_harness import Result, env

TIMEOUT_S = 180
ROOT = Path(__file__).resolve().parent.parent


@dataclass(repr=False)
class Run(Result):
    """A child's end: `rc` is None when a signal killed it (`signal` says which)."""

    signal: int | None = None

    def __repr__(self) -> str:  # what pytest shows when an assertion about a run fails
        how = f"signal {self.signal}" if self.signal else f"rc {self.rc}"
        return f"rvq {' '.join(self.argv)} -> {how}\n--- stderr ---\n{self.stderr}"


class Started:
    """A child still running: `paused()` once it stops at its pause point, `release()`, `wait()`."""

    def __init__(self, faults: "Faults", pid: int, argv: list[str], base: Path):
        self.faults, self.pid, self.argv, self.base = faults, pid, argv, base

    def paused(self, timeout: float = TIMEOUT_S) -> bool:
        """True once the child waits at its pause point; False if it ended without getting there."""
        deadline = time.monotonic() + timeout
        while not self.base.with_suffix(".paused").exists():
            if self.faults._ask({"op": "poll", "pid": self.pid})["done"] or time.monotonic() > deadline:
                return self.base.with_suffix(".paused").exists()
            time.sleep(0.01)
        return True

    def release(self) -> None:
        self.base.with_suffix(".release").touch()

    def wait(self) -> Run:
        reply = self.faults._ask({"op": "wait", "pid": self.pid})
        return Run(self.argv, reply["rc"], self.base.with_suffix(".out").read_bytes(),
                   self.base.with_suffix(".err").read_text(errors="replace"), signal=reply["signal"])


class Faults:
    """`faults(*args, cwd=..., kill=(3, "after"))` -> Run; `faults.start(...)` -> Started."""

    def __init__(self):
        self._dir = Path(tempfile.mkdtemp(prefix="rvq-faults-"))
        self._server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, cwd=self._dir,
                                        env={**env(), "PYTHONPATH": str(ROOT)})  # it imports tests.*
        self._count = 0

    def _ask(self, request: dict) -> dict:
        self._server.stdin.write((json.dumps(request) + "\n").encode())
        self._server.stdin.flush()
        reply = self._server.stdout.readline()
        if not reply:
            raise RuntimeError("the fault-injection server died")
        return json.loads(reply)

    def start(self, *args: str | Path, cwd: str | Path, kill: tuple[int, str] | None = None,
              pause: tuple[int, str] | None = None, record: Path | None = None) -> Started:
        argv = [str(a) for a in args]
        self._count += 1
        base = self._dir / str(self._count)
        request = {"op": "start", "argv": argv, "cwd": str(cwd), "base": str(base), "kill": kill, "pause": pause,
                   "record": str(record) if record else None}
        return Started(self, self._ask(request)["pid"], argv, base)

    def __call__(self, *args: str | Path, cwd: str | Path, kill: tuple[int, str] | None = None,
                 record: Path | None = None) -> Run:
        return self.start(*args, cwd=cwd, kill=kill, record=record).wait()

    def close(self) -> None:
        self._server.stdin.close()
        self._server.wait(timeout=30)
        shutil.rmtree(self._dir, ignore_errors=True)


def recorded(record: Path) -> list[tuple[str, bytes]]:
    """(target, bytes) of every file a recorded run put in place, in order."""
    log = [json.loads(line) for line in (record / "log.jsonl").read_text().splitlines()]
    return [(entry["target"], (record / f"{entry['n']:05d}").read_bytes()) for entry in log]


# ---- the server --------------------------------------------------------------------------------
def _child(req: dict) -> None:
    """One `rvq` run with `os.replace` wrapped as the request says; never returns."""
    import signal
    import traceback

    import rvqtool.cli

    code = 1
    try:
        os.chdir(req["cwd"])
        base = Path(req["base"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, str(base.with_suffix(".out")), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, str(base.with_suffix(".err")), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            new = os.open(path, flags, 0o644)
            os.dup2(new, fd)
            os.close(new)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        real_replace, calls = os.replace, [0]
        record = Path(req["record"]) if req["record"] else None
        if record:
            record.mkdir(parents=True, exist_ok=True)

        def at(n: int, when: str) -> None:
            if req["kill"] == [n, when]:
                os.kill(os.getpid(), signal.SIGKILL)
            if req["pause"] == [n, when]:
                base.with_suffix(".paused").touch()
                deadline = time.monotonic() + TIMEOUT_S
                while not base.with_suffix(".release").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)

        def replace(src, dst, *args, **kwargs):
            target = os.path.relpath(dst)
            if target.startswith(".."):  # not the job's (a cache elsewhere): not an instant of the run
                return real_replace(src, dst, *args, **kwargs)
            calls[0] += 1
            n = calls[0]
            at(n, "before")
            real_replace(src, dst, *args, **kwargs)
            if record:
                shutil.copyfile(dst, record / f"{n:05d}")
                with open(record / "log.jsonl", "a") as log:
                    log.write(json.dumps({"n": n, "target": target}) + "\n")
            at(n, "after")

        os.replace = replace
        sys.argv = ["rvq", *req["argv"]]
        try:
            rvqtool.cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def _serve() -> None:
    import signal

    import rvqtool.file_jobs  # noqa: F401  -- what the commands import lazily, paid for once here
    import rvqtool.cli  # noqa: F401
    import rvqtool.codec  # noqa: F401
    import rvqtool.tokens.api  # noqa: F401
    import rvqtool.train.trainer  # noqa: F401

    finished: dict[int, int] = {}
    for line in sys.stdin.buffer:
        req = json.loads(line)
        if req["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(req)
            reply = {"pid": pid}
        else:
            pid = req["pid"]
            deadline = time.monotonic() + TIMEOUT_S
            while pid not in finished:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    finished[pid] = status
                elif req["op"] == "poll":
                    break
                elif time.monotonic() > deadline:  # a run that hangs fails its test instead of the suite
                    os.kill(pid, signal.SIGKILL)
                else:
                    time.sleep(0.005)
            status = finished.get(pid)
            if req["op"] == "poll":
                reply = {"done": status is not None}
            else:
                signalled = os.WIFSIGNALED(status)
                reply = {"rc": None if signalled else os.WEXITSTATUS(status),
                         "signal": os.WTERMSIG(status) if signalled else None}
        sys.stdout.buffer.write((json.dumps(reply) + "\n").encode())
        sys.stdout.buffer.flush()


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
