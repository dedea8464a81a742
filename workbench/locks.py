"""Build locks: one builder of a store or corpus at a time, and a killed builder blocks nobody.

`build_lock(target)` serialises the builders of a store or corpus with a POSIX record lock
(``fcntl.lockf``) on ``<target>.lock``: the kernel drops it when its owner dies, even on SIGKILL,
forked workers never hold it (record locks belong to a process, and the file is opened
O_CLOEXEC), and a process that waits says for whom. `pid_alive` is shared with the run-folder
lock (`workbench.runs.acquire_lock`). Worker processes that die with their parent are in
`workbench.workers`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
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
