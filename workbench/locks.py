"""Locks and worker hygiene: one builder at a time, and a killed job leaves nothing that blocks.

`build_lock(target)` serialises the builders of a store or corpus with a POSIX record lock
(``fcntl.lockf``) on ``<target>.lock``: the kernel drops it when its owner dies, even on SIGKILL,
forked workers never hold it (record locks belong to a process, and the file is opened
O_CLOEXEC), and a process that waits says for whom. `worker_init_die_with_parent` makes pool
workers exit when their parent dies; `worker_results`'s pools and `beside`'s one process use it.
`pid_alive` is shared with the run-folder lock (`workbench.runs.acquire_lock`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Iterator


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _lock_holder(fd: int) -> int:
    """The pid the kernel says holds the POSIX lock on ``fd`` (F_GETLK), or the pid written in
    the file by the holder when the kernel does not tell (0 when neither is known)."""
    import fcntl
    import struct

    try:  # struct flock on Linux: short type, short whence, off_t start, off_t len, pid_t pid
        fmt = "hhqqi"
        req = struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        l_type, _, _, _, pid = struct.unpack(fmt, fcntl.fcntl(fd, fcntl.F_GETLK, req))
        if l_type != fcntl.F_UNLCK and pid > 0:
            return pid
    except (OSError, struct.error, AttributeError):
        pass
    try:
        return int(os.pread(fd, 32, 0).decode().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def build_lock(target: str | os.PathLike, poll: float = 0.5) -> Iterator[Path]:
    """Hold ``<target>.lock`` while building ``target``; serialises builders of one store.

    A POSIX record lock (``lockf``) rather than ``flock``: it belongs to this process only, so
    forked workers never hold it and the kernel drops it the moment this process dies, even by
    SIGKILL, whatever its orphaned children do (an ``flock`` is shared with forked children and
    was kept by an orphaned worker, hanging every later build). The fd is close-on-exec. A
    builder that has to wait says so, with the holder's pid; a holder that is no longer alive
    (stale) is not waited for.
    """
    import fcntl

    lock = Path(target).with_name(Path(target).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        told, stale = -1e9, set()
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:  # EAGAIN / EACCES: another process holds it
                holder = _lock_holder(fd)
                if holder and not pid_alive(holder):
                    if holder not in stale:  # the kernel frees a dead process's lock: retry
                        print(f"[lock] {lock}: holder {holder} is no longer alive (stale lock); "
                              "retrying", flush=True)
                        stale.add(holder)
                    time.sleep(poll)
                    continue
                if time.monotonic() - told > 60:
                    print(f"[lock] waiting for process {holder or '?'} that is building {target} "
                          f"(lock {lock}); it is released when that process ends", flush=True)
                    told = time.monotonic()
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # closing releases the lock


def worker_init_die_with_parent() -> None:
    """Pool worker initializer: exit when the parent process dies.

    A worker orphaned by a killed parent would otherwise wait on its task queue forever. On
    Linux the kernel kills it (PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent pid.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

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
    from multiprocessing import get_context

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
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

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
