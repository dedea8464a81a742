"""Ingestion: decode a real dataset once into an `AudioStore` (16 kHz mono int16 memmap).

``ingest(DataConfig(dataset="mtat", root="/data/mtat", variant="B"))`` reads the dataset's
metadata with its reader (`workbench.data.mtat`, `.jamendo`, `.gtzan`, `.folder`), which returns
one common `DatasetTable` (track ids, paths relative to the root, splits, an (N, K) label matrix,
tag names and families, the task), then decodes every file with `workbench.audio.load_audio` in
worker processes and appends the good ones to a `StoreWriter` in table order. The store lives in
``data_dir()/stores/<dataset>-<variant>-<hash>/`` (hash of root, variant, cap, sample rate and
the listing, see `store_root`):

- an interrupted ingestion resumes where it stopped (``StoreWriter(resume=True)`` keeps every
  journaled track; the others are decoded again), and a finished store is reused as is;
- a file that is missing, empty, corrupt, shorter than one 4 s segment or silent is written to
  ``ingest_report.csv`` (path, reason) in the store and left out; nothing is replaced by zeros;
- the counts per split are printed next to the published counts (shared/DATASETS.md) and a
  mismatch is a warning that gives both numbers.

Paths read from metadata files go through `resolve_entry`: an entry that is absolute or points
outside the dataset root (``..`` or a symlink leading out) is refused with an error naming it.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import importlib
import json
import os
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from workbench.audio import load_audio
from workbench.config import DataConfig, data_dir
from workbench.data.store import AudioStore, StoreWriter

# Dataset name -> module whose ``read(root, variant) -> DatasetTable`` parses its metadata.
# Module names rather than functions: the readers import `DatasetTable` from here.
READERS = {
    "mtat": "workbench.data.mtat",
    "jamendo": "workbench.data.jamendo",
    "gtzan": "workbench.data.gtzan",
    "folder": "workbench.data.folder",
    "csv": "workbench.data.folder",
}
TASKS = ("multi_label", "single_label", "none")
SEGMENT_SECONDS = 4.0  # one view segment (paper); a shorter file cannot give a view
STORE_FORMAT = 1  # bump when what the store holds for the same inputs changes


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


def read_table(data_cfg: DataConfig) -> DatasetTable:
    """Parse a dataset's metadata into a `DatasetTable` (no audio is read)."""
    if data_cfg.dataset not in READERS:
        raise ValueError(f"unknown dataset {data_cfg.dataset!r}; ingestible datasets: {', '.join(READERS)} "
                         "(synth is the embedded corpus, built by workbench.data.synth)")
    if not data_cfg.root:
        raise ValueError(f"dataset {data_cfg.dataset!r} needs a root: DataConfig(root=...) or --root PATH")
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    module = importlib.import_module(READERS[data_cfg.dataset])
    reader = module.read_csv_dataset if data_cfg.dataset == "csv" else module.read
    return reader(root, data_cfg.variant)


def store_root(table: DatasetTable, data_cfg: DataConfig, sample_rate: int) -> Path:
    """``data_dir()/stores/<dataset>-<variant>-<hash>``.

    The hash covers the root, variant, cap and sample rate, and a fingerprint of the listing
    (track ids, paths, splits, labels, tag names): a folder that gained files or a CSV whose
    tags changed gets a new store instead of a stale one.
    """
    listing = hashlib.sha256()
    listing.update(table.tracks[["track_id", "path", "split"]].to_csv(index=False).encode())
    listing.update(np.ascontiguousarray(table.labels).tobytes())
    listing.update(json.dumps(table.tag_names).encode())
    key = json.dumps({"root": str(Path(table.root).resolve()), "dataset": table.dataset,
                      "variant": table.variant, "max_seconds": data_cfg.max_seconds,
                      "sample_rate": int(sample_rate), "format": STORE_FORMAT,
                      "listing": listing.hexdigest()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return data_dir() / "stores" / f"{table.name}-{digest}"


# --------------------------------------------------------------------------- decoding (workers)

def _decode(job: tuple[int, str, int, float | None]) -> tuple[int, np.ndarray | None, str | None]:
    """Decode one file in a worker: ``(row, audio float32 (S,) or None, reason it was left out)``."""
    row, path, sample_rate, max_seconds = job
    if not os.path.exists(path):
        return row, None, "missing: no such file"
    if os.path.getsize(path) == 0:
        return row, None, "empty file (0 bytes)"
    try:
        x = load_audio(path, sample_rate=sample_rate, max_seconds=max_seconds)
    except Exception as err:  # any decoder failure on one file must not stop a 25k-file ingestion
        reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
        if "does not exist" in reason:  # libsndfile's words for bytes it cannot recognise
            reason = "not a decodable audio file (format not recognised by libsndfile)"
        return row, None, f"corrupt: {reason}"
    seconds = x.size / sample_rate
    if seconds < SEGMENT_SECONDS:
        return row, None, f"too short: {seconds:.2f} s < one {SEGMENT_SECONDS:g} s segment"
    if not np.any(np.abs(x) > 1e-6):  # load_audio peak-normalises, so only digital silence is all ~0
        return row, None, "silent: every sample is zero"
    return row, x, None


def _decode_chunk(jobs: list[tuple]) -> list[tuple[int, np.ndarray | None, str | None]]:
    return [_decode(j) for j in jobs]


def _worker_init() -> None:
    # One intra-op thread a worker: the workers are the parallelism, and a forked child must not
    # enter an OpenMP region that its parent's torch already started (libgomp is not fork-safe).
    import torch

    torch.set_num_threads(1)


def _decoded(jobs: list[tuple], workers: int, chunk: int):
    """Yield decoded results in job order; at most ``4 * workers`` chunks in flight (bounded memory)."""
    if workers <= 1:  # in this process, one file at a time (a patched loader is seen here)
        for job in jobs:
            yield _decode(job)
        return
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    pending: collections.deque[Future] = collections.deque()
    it = iter(chunks)
    try:
        for c in it:
            pending.append(pool.submit(_decode_chunk, c))
            if len(pending) >= 4 * workers:
                break
        while pending:
            results = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_decode_chunk, nxt))
            yield from results
        pool.shutdown(wait=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- ingestion

def ingest(data_cfg: DataConfig, workers: int | None = None, progress: bool = True,
           sample_rate: int = 16_000) -> AudioStore:
    """Decode ``data_cfg``'s dataset into its store (or open it when already complete).

    ``workers``: decoding processes (default: cores - 1, since this process writes the store;
    1 decodes in this process, which on 2 cores was the fastest: 95 vs 76 MTAT clips/s).
    ``sample_rate``: of the store (the run's ``AudioConfig.sample_rate``; the paper's 16 kHz).
    """
    table = read_table(data_cfg)
    root = store_root(table, data_cfg, sample_rate)
    if (root / "COMPLETE").is_file():
        store = AudioStore.open(root)
        print(f"[ingest] {table.name}: reusing {root}", flush=True)
        return store
    root.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": table.name, "dataset_family": table.dataset, "variant": table.variant,
            "root": str(Path(table.root).resolve()), "task": table.task,
            "pretrain_splits": list(table.pretrain_splits), "max_seconds": data_cfg.max_seconds,
            "expected_counts": table.expected, "listed_counts": table.counts()}
    workers = max(1, int(workers or (os.cpu_count() or 2) - 1))
    tracks = table.tracks.reset_index(drop=True)
    extra_cols = [c for c in tracks.columns if c not in ("track_id", "path", "split")]
    with StoreWriter(root, sample_rate, table.tag_names, table.tag_families, meta, resume=True) as writer:
        done = writer.done_ids()
        if done:
            print(f"[ingest] {table.name}: resuming, {len(done)} of {len(tracks)} tracks already in "
                  f"{writer.partial}", flush=True)
        todo = [i for i, t in enumerate(tracks["track_id"]) if t not in done]
        jobs = [(i, str(Path(table.root) / tracks.at[i, "path"]), int(sample_rate), data_cfg.max_seconds)
                for i in todo]
        print(f"[ingest] {table.name}: decoding {len(jobs)} files from {table.root} with {workers} "
              f"worker(s) into {root}", flush=True)
        report: list[dict[str, str]] = []
        bar = _progress(len(tracks), len(done), table.name, progress)
        for i, audio, reason in _decoded(jobs, workers, chunk=max(1, min(16, len(jobs) // (8 * workers) or 1))):
            path = tracks.at[i, "path"]
            if reason is not None:
                if path in table.known_broken:
                    reason = f"{table.known_broken[path]}; {reason}"
                report.append({"track_id": tracks.at[i, "track_id"], "split": tracks.at[i, "split"],
                               "path": path, "reason": reason})
            else:
                writer.add(tracks.at[i, "track_id"], audio, tracks.at[i, "split"], table.labels[i],
                           source=path, **{c: tracks.at[i, c] for c in extra_cols})
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        pd.DataFrame(report, columns=["track_id", "split", "path", "reason"]).to_csv(
            writer.partial / "ingest_report.csv", index=False, quoting=csv.QUOTE_MINIMAL)
        writer.meta["n_reported"] = len(report)
        store = writer.commit()
    _summarise(table, store, report)
    return store


def _progress(total: int, initial: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"ingest {name}", unit="file")


def _summarise(table: DatasetTable, store: AudioStore, report: list[dict[str, str]]) -> None:
    """Print kept / listed / expected counts per split; warn where the published count is not met."""
    listed = table.counts()
    kept = {s: int(c) for s, c in store.tracks["split"].value_counts(sort=False).items()}
    print(f"[ingest] {table.name}: {len(store)} tracks kept, {len(report)} left out "
          f"(see {store.root / 'ingest_report.csv'})", flush=True)
    for split in listed:
        exp = table.expected.get(split)
        print(f"[ingest]   {split:>5}: kept {kept.get(split, 0)}, listed {listed[split]}, "
              f"expected {exp if exp is not None else 'n/a'}", flush=True)
        # The published counts are either of listed files (A-sota keeps the 3 broken clips in its
        # lists) or of usable ones (split B leaves them out): either one matching is a match.
        if exp is not None and exp not in (kept.get(split, 0), listed[split]):
            warnings.warn(f"{table.name} split {split!r}: {kept.get(split, 0)} tracks kept "
                          f"({listed[split]} listed), expected {exp} (shared/DATASETS.md)", stacklevel=3)
    for r in report[:10]:
        print(f"[ingest]   left out {r['path']}: {r['reason']}", flush=True)
    if len(report) > 10:
        print(f"[ingest]   ... and {len(report) - 10} more", flush=True)


def read_report(store: AudioStore) -> pd.DataFrame:
    """The files left out of a store at ingestion (track_id, split, path, reason)."""
    path = Path(store.root) / "ingest_report.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["track_id", "split", "path", "reason"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


__all__ = ["DatasetTable", "UnsafePathError", "READERS", "ingest", "read_table", "read_report",
           "resolve_entry", "store_root", "find_file"]
