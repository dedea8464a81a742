"""Files that survive a kill: atomic writes and JSON-lines appends.

`atomic_write(path, write)` writes a temporary file, syncs it and renames it over ``path``, then
syncs the folder: a reader sees the old file or the whole new one, after a killed process and
after a power cut alike. `save_torch`, `save_npz` and `save_text` are its three uses;
`append_jsonl` adds one row to a metrics or warnings file. `read_checkpoint` reads a torch file
as tensors and plain containers only, and names a damaged or untrusted file in one line.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then fsync and rename over ``path``, then fsync the folder: a reader sees
    the old file or the whole new one, after a killed process and after a power cut alike."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory
        pass
    finally:
        os.close(fd)
    return path


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a buffer: the same object gives the same bytes (a file name would go
    into the archive, and the temporary one carries the writer's pid), so a checkpoint's hash is
    a hash of its content."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return atomic_write(path, write)


def save_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


class DamagedCheckpointError(RuntimeError):
    """A checkpoint that cannot be read back: truncated, overwritten, not a torch file, or holding
    Python objects beyond tensors and plain containers (refused unread)."""


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a file that fails is one line naming it and
    what is wrong, never torch's advice to load it with ``weights_only=False`` (that would run
    whatever code the file carries). FileNotFoundError passes through."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        raise DamagedCheckpointError(
            f"checkpoint {path} is damaged or untrusted: it holds Python objects other than tensors and "
            f"plain containers, which are refused unread (loading them could run code)") from err
    except Exception as err:  # truncated zip, not a torch file, a torch version mismatch
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise DamagedCheckpointError(f"checkpoint {path} is damaged: cannot be read as a torch file "
                                     f"({type(err).__name__}: {first})") from err
