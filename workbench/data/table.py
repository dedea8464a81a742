"""The common table every dataset reader returns, and the safe path helpers readers use.

A reader (`workbench.data.mtat`, `.jamendo`, `.gtzan`, `.folder`) parses a dataset's metadata
into a `DatasetTable`; paths from metadata go through `resolve_entry` (an absolute entry or one
that leads outside the root is refused, naming it); `detect_layout` chooses where the audio sits
from the files that exist over every row. `workbench.data.ingest` decodes what the table lists.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from workbench.config import LABEL_TASKS

TASKS = (*LABEL_TASKS, "none")  # "none": an unlabeled pool


class UnsafePathError(ValueError):
    """A metadata entry that is absolute or resolves outside the dataset root."""


@dataclass
class DatasetTable:
    """What a reader returns: one row a listed track, labels aligned with the rows.

    ``tracks`` columns: track_id (str, unique), path (str, relative to ``root``, POSIX), split
    (train | valid | test | pool); extra columns (e.g. clip_id) are copied into the store.
    ``labels`` (N, K) uint8 with row i for ``tracks.iloc[i]``. ``expected`` maps split -> the
    published number of tracks (None when unknown). ``known_broken`` maps a path to the reason it
    is known to be broken (MTAT's three clips).
    """

    dataset: str  # family: mtat | jamendo | gtzan | folder | csv
    variant: str | None
    root: Path
    tracks: pd.DataFrame
    labels: np.ndarray
    tag_names: list[str]
    task: str
    tag_families: dict[str, list[str]] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    known_broken: dict[str, str] = field(default_factory=dict)
    pretrain_splits: list[str] = field(default_factory=lambda: ["train"])

    def __post_init__(self) -> None:
        n, k = len(self.tracks), len(self.tag_names)
        self.labels = np.asarray(self.labels, dtype=np.uint8).reshape(n, k)
        missing = {"track_id", "path", "split"} - set(self.tracks.columns)
        if missing:
            raise ValueError(f"{self.name}: table lacks columns {sorted(missing)}")
        dup = self.tracks["track_id"][self.tracks["track_id"].duplicated()]
        if len(dup):
            raise ValueError(f"{self.name}: duplicate track ids, e.g. {dup.iloc[0]!r}")
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task {self.task!r} not in {TASKS}")

    @property
    def name(self) -> str:
        """Dataset name as it appears in the store meta and every result row, e.g. ``mtat-A``."""
        return self.dataset if not self.variant else f"{self.dataset}-{self.variant}"

    def counts(self) -> dict[str, int]:
        return {s: int(c) for s, c in self.tracks["split"].value_counts(sort=False).items()}


def resolve_entry(root: str | os.PathLike, entry: str, source: str = "metadata") -> Path:
    """The file a metadata entry names, refused unless it lies under ``root``.

    Refused (`UnsafePathError` naming the entry and the file it came from): an absolute path
    (POSIX or Windows), any ``..`` component, and a path whose symlinks resolve outside the root.
    The file itself need not exist (a missing file is reported at decoding, not here).
    """
    text = str(entry).strip()
    if (not text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()
            or PureWindowsPath(text).drive):
        raise UnsafePathError(f"entry {entry!r} in {source} is an absolute or empty path; "
                              f"only paths relative to the dataset root {root} are accepted")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafePathError(f"entry {entry!r} in {source} contains '..'; paths must stay under "
                              f"the dataset root {root}")
    root_real = Path(root).resolve()
    path = Path(root).joinpath(*parts)
    real = path.resolve()
    if real != root_real and root_real not in real.parents:
        raise UnsafePathError(f"entry {entry!r} in {source} resolves to {real}, outside the dataset "
                              f"root {root_real} (a symlink leading out?): refused")
    return path


def find_file(root: Path, names: list[str], subdirs: tuple[str, ...] = ("",)) -> Path | None:
    """The first of ``subdir/name`` that exists under root (readers accept a few usual layouts)."""
    for sub in subdirs:
        for name in names:
            p = root / sub / name
            if p.is_file():
                return p
    return None


def detect_layout(root: Path, layouts: dict, name: str, describe=str):
    """The candidate layout under which most listed files exist, printed with its count.

    ``layouts`` maps a key (in order of preference: ties go to the first) to one entry a listed
    track: a path relative to root, or a tuple of alternative paths (any one existing counts).
    Every row counts, not the first few: in a partial copy the first files may be the missing
    ones. Existence comes from one ``scandir`` a parent folder (cached), not one stat a file.
    """
    listing: dict[str, set[str]] = {}

    def exists(rel: str) -> bool:
        parent, base = posixpath.split(rel)
        if parent not in listing:
            try:
                with os.scandir(root / parent if parent else root) as it:
                    listing[parent] = {e.name for e in it if e.is_file()}
            except OSError:
                listing[parent] = set()
        return base in listing[parent]

    def safe(rel: str) -> bool:
        return bool(rel) and not rel.startswith(("/", "\\")) and ".." not in rel.split("/")

    hits = {}
    for key, entries in layouts.items():
        hits[key] = sum(any(safe(r) and exists(r) for r in ((e,) if isinstance(e, str) else e))
                        for e in entries)
    best = max(hits, key=lambda k: hits[k])  # max keeps the first of equal counts
    n = len(next(iter(layouts.values()), []))
    others = ", ".join(f"{describe(k)}: {c}" for k, c in hits.items() if k != best and c)
    if hits[best] == 0:
        print(f"[{name}] no listed audio file found under {root} in any known layout "
              f"({', '.join(describe(k) for k in layouts)}); every track will be reported missing",
              flush=True)
    else:
        print(f"[{name}] audio layout {describe(best)}: {hits[best]} of {n} listed files found"
              + (f" (other layouts: {others})" if others else ""), flush=True)
    return best
