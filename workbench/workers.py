"""Worker processes that die with their parent: pools, one process beside this one, how many at once.

A killed job leaves no worker behind: `worker_init_die_with_parent` makes a worker exit when its
parent dies (PR_SET_PDEATHSIG on Linux, a watchdog thread elsewhere); `worker_results`'s pools
and `beside`'s one process use it. `parallel_jobs` says how many CPU jobs (runs, encoders to
probe, notebooks) to run at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Iterator


def parallel_jobs(jobs: int, threads: int, device_type: str) -> int:
    """How many of ``jobs`` CPU jobs to run at once: ``cores // threads`` when ``threads`` (the
    config's ``train.threads``) is set and the work runs on CPU, else 1 (one after another in
    this process: on CUDA the device is the bottleneck, threads 0 uses every core)."""
    if not threads or jobs < 2 or device_type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(jobs, cores // threads))


def worker_init_die_with_parent() -> None:
    """Pool worker initializer: exit when the parent process dies.

    A worker orphaned by a killed parent would otherwise wait on its task queue forever. On
    Linux the kernel kills it (PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent pid.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _worker_start(initializer, initargs) -> None:
    worker_init_die_with_parent()
    if initializer is not None:
        initializer(*initargs)


def beside(fn, args: tuple):
    """``fn(*args)`` started in a spawned process that exits when this one dies (a picklable,
    module-level ``fn``); returns the process: ``join()`` it, then read ``exitcode``."""
    proc = get_context("spawn").Process(target=_die_with_parent_then, args=(fn, args), name=fn.__name__)
    proc.start()
    return proc


def _die_with_parent_then(fn, args: tuple) -> None:
    worker_init_die_with_parent()
    fn(*args)


@contextlib.contextmanager
def worker_results(fn, items: list, workers: int, initializer=None, initargs: tuple = (), chunksize: int = 1,
                   min_items: int = 8, start: str = "fork") -> Iterator:
    """``fn`` over ``items``, in order, in a pool of ``workers`` processes that exit when this
    one dies (in this process when ``workers`` <= 1 or fewer than ``min_items`` items);
    ``initializer(*initargs)`` prepares each worker (or this process). ``start="fork"``: workers
    need no re-import of the caller's script and start at once (NumPy work); ``"spawn"``: a
    fresh interpreter, for torch work after this process has used torch's thread pool. The pool
    is shut down, pending work cancelled, when the block ends, normally or not."""
    if workers > 1 and len(items) >= min_items:
        pool = ProcessPoolExecutor(workers, mp_context=get_context(start), initializer=_worker_start,
                                   initargs=(initializer, initargs))
        try:
            yield pool.map(fn, items, chunksize=chunksize)
        finally:
            pool.shutdown(cancel_futures=True)
    else:
        if initializer is not None:
            initializer(*initargs)
        yield map(fn, items)
