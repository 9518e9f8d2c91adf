"""Engines of a token job on this machine: an engine takes the groups of files to do and yields
each group's results (Codes or why the file failed) in order. Ray's is `rvqtool.tokens.ray_engine`."""
from __future__ import annotations

from rvqtool.errors import UserError
from rvqtool.tokens.run import Engine


def local_engine(kind: str, model: str, device: str, n_q: int, workers: int, encoder=None,
                 threads: int | None = None, batch: int = 1) -> Engine:
    """Groups encoded in this process (workers=1, reusing `encoder` when given) or by a process pool
    (spawned: each worker loads the model once), with `threads` torch threads per worker
    (default: cores // workers) and `batch` windows per encoder call."""
    from rvqtool.tokens import encoders

    threads = threads or encoders.cpu_threads(workers)

    def in_process(groups):
        import torch

        caller_threads = torch.get_num_threads()     # a Python caller's setting, given back at the end
        torch.set_num_threads(threads)
        try:
            worker = encoder or encoders.make_worker(kind, model, device, n_q, batch)
            for first, paths in groups:
                for k, result in enumerate(worker.iter_group(paths)):
                    yield first + k, [result]
        finally:
            torch.set_num_threads(caller_threads)

    def pooled(groups):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # an executor, not a Pool: a worker that dies (out of memory, killed) fails the job with a
        # message instead of leaving it waiting forever for that worker's results
        with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), encoders.init_worker,
                                 (kind, model, device, n_q, threads, batch)) as pool:
            try:
                yield from pool.map(encoders.run_group, groups)
            except BrokenProcessPool:
                raise UserError("a worker process died (out of memory? killed?); finished shards are kept: "
                                "run the same command again to go on")

    return in_process if workers <= 1 else pooled
