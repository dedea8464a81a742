"""Ingestion: decode a real dataset once into an `AudioStore` (16 kHz mono int16 memmap).

``ingest(DataConfig(dataset="mtat", root="/data/mtat", variant="B"))`` reads the dataset's
metadata with its reader (`workbench.data.mtat`, `.jamendo`, `.gtzan`, `.folder`), which returns
one common `DatasetTable` (track ids, paths relative to the root, splits, an (N, K) label matrix,
tag names and families, the task), then decodes every file with `workbench.audio.load_audio` in
worker processes and appends the good ones to a `StoreWriter` in table order. The store lives in
``data_dir()/stores/<dataset>-<variant>-<hash>/`` (hash of root, variant, cap, sample rate and
the listing, see `store_root`):

- an interrupted ingestion resumes where it stopped (``StoreWriter(resume=True)`` keeps every
  journaled track; the others are decoded again); one builder at a time (`build_lock`);
- a finished store is reused while the audio copy is unchanged: ``sources.csv`` in the store
  holds the size and mtime of every listed file (-1 when missing) at build time; when files
  appeared, vanished or changed, the store is updated: unchanged tracks are copied from the
  old store and only the changed files are decoded;
- a file that is missing, empty, corrupt (including a header-less file that libsndfile would
  read as RAW noise and a file decoded far shorter than its header announces), shorter than one
  4 s segment or silent is written to ``ingest_report.csv`` (path, reason; the reason starts
  with one of `REASONS`) in the store and left out; nothing is replaced by zeros;
- what the decoders print on the C-level stderr (libmpg123) is captured per file instead of
  breaking the progress bar: kept with the reason of a file left out, and in
  ``decoder_messages.csv`` for a kept file;
- the counts per split are printed next to the published counts (shared/DATASETS.md) and a
  mismatch is a warning that gives both numbers; when more than `ALARM_LEFT_OUT` of the listed
  tracks are left out, a loud warning gives the counts per reason (a wrong root, a partial copy).

Paths read from metadata files go through `resolve_entry`: an entry that is absolute or points
outside the dataset root (``..`` or a symlink leading out) is refused with an error naming it.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import importlib
import json
import os
import posixpath
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
import soundfile as sf

from workbench.audio import load_audio
from workbench.config import DataConfig, data_dir
from workbench.data.store import AudioStore, StoreWriter, build_lock, worker_init_die_with_parent

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
REASONS = ("missing", "empty", "corrupt", "too short", "silent")  # first word of every report reason
ALARM_LEFT_OUT = 0.5  # above this share of listed tracks left out, a loud warning (wrong root?)
TRUNCATED = 0.5  # decoded length below this share of the header's length: truncated, corrupt
SOURCES = "sources.csv"  # path, size, mtime_ns of every listed file at build time (-1: missing)
DECODER_MESSAGES = "decoder_messages.csv"
# Magic bytes of the containers that always have a header (an MP3 may start with junk).
_MAGIC = {".wav": (b"RIFF", b"RF64", b"BW64"), ".au": (b".snd",), ".snd": (b".snd",),
          ".flac": (b"fLaC", b"ID3"), ".ogg": (b"OggS",), ".opus": (b"OggS",), ".aif": (b"FORM",),
          ".aiff": (b"FORM",)}


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

def reason_kind(reason: str) -> str:
    """The reason word of a report line (one of `REASONS`; 'other' if none), also after a note
    such as MTAT's ``known broken MTAT clip 35644; empty: ...``."""
    for part in str(reason).split("; "):
        for kind in REASONS:
            if part.startswith(kind):
                return kind
    return "other"


def _header_problem(path: str) -> str | None:
    """Why a file whose extension implies a header does not start with it (None: looks fine).

    Random bytes named ``x.au`` would otherwise be read by libsndfile as header-less RAW
    u-law and kept as 8 kHz noise."""
    magic = _MAGIC.get(os.path.splitext(path)[1].lower())
    if magic is None:
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(magic):
        return None
    return (f"no {os.path.splitext(path)[1]} header: starts with {head!r}, expected "
            f"{' or '.join(repr(m) for m in magic)}")


@contextlib.contextmanager
def _captured_stderr():
    """Send the C-level stderr (fd 2) to a temporary file; yields a list that receives its text.

    libmpg123 prints warnings ("Xing stream size off ...") straight to fd 2, which breaks the
    progress bar; they belong to the file's line in the report instead."""
    out: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (some embedded interpreters)
        yield out
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = " | ".join(line.strip() for line in tmp.read().decode("utf-8", "replace").splitlines()
                              if line.strip())
            if text:
                out.append(text[:500])


def _decode(job: tuple[int, str, int, float | None]) -> tuple[int, np.ndarray | None, str | None, str]:
    """Decode one file in a worker: ``(row, audio float32 (S,) or None, reason it was left out,
    what the decoder printed)``; every reason starts with one of `REASONS`."""
    row, path, sample_rate, max_seconds = job
    if not os.path.exists(path):
        return row, None, "missing: no such file", ""
    if os.path.getsize(path) == 0:
        return row, None, "empty: the file has 0 bytes", ""
    problem = _header_problem(path)
    if problem:
        return row, None, f"corrupt: {problem}", ""
    with _captured_stderr() as said:
        try:
            info = sf.info(path)
        except Exception:  # load_audio below says why, in the reason
            info = None
        if info is not None and info.format == "RAW":
            return row, None, (f"corrupt: no audio header (libsndfile would read the bytes as "
                               f"header-less RAW {info.subtype} at {info.samplerate} Hz)"), ""
        try:
            x = load_audio(path, sample_rate=sample_rate, max_seconds=max_seconds)
        except Exception as err:  # any decoder failure on one file must not stop a 25k-file ingestion
            x, reason = None, getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
            if "does not exist" in reason:  # libsndfile's words for bytes it cannot recognise
                reason = "not a decodable audio file (format not recognised by libsndfile)"
    noise = said[0] if said else ""
    if x is None:
        return row, None, f"corrupt: {reason}" + (f"; decoder said: {noise}" if noise else ""), noise
    return (row, *_check_decoded(x, info, sample_rate, max_seconds, noise), noise)


def _check_decoded(x: np.ndarray, info, sample_rate: int, max_seconds: float | None,
                   noise: str) -> tuple[np.ndarray | None, str | None]:
    """``(x, None)`` for a usable track, else ``(None, reason)``: truncated, too short, silent."""
    seconds = x.size / sample_rate
    if info is not None and info.frames > 0 and info.samplerate > 0:
        announced = info.frames / info.samplerate
        if max_seconds is not None:
            announced = min(announced, max_seconds)
        if seconds < TRUNCATED * announced:  # e.g. an MP3 cut short: its header knows the length
            said = f"; decoder said: {noise}" if noise else ""
            return None, (f"corrupt: truncated, decoded {seconds:.2f} s of the {announced:.2f} s "
                          f"its header announces{said}")
    if seconds < SEGMENT_SECONDS:
        return None, f"too short: {seconds:.2f} s < one {SEGMENT_SECONDS:g} s segment"
    if not np.any(np.abs(x) > 1e-6):  # load_audio peak-normalises, so only digital silence is all ~0
        return None, "silent: every sample is zero"
    return x, None


def _decode_chunk(jobs: list[tuple]) -> list[tuple]:
    return [_decode(j) for j in jobs]


def _worker_init() -> None:
    # One intra-op thread a worker: the workers are the parallelism, and a forked child must not
    # enter an OpenMP region that its parent's torch already started (libgomp is not fork-safe).
    # A worker orphaned by a killed parent exits instead of waiting on its queue forever.
    worker_init_die_with_parent()
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


# --------------------------------------------------------------------------- fingerprint of the audio copy

def source_stats(root: str | os.PathLike, paths) -> pd.DataFrame:
    """``path, size, mtime_ns`` of every listed file (-1, -1 when missing): one stat a file,
    well under a second for Jamendo's 55k files on a local disk."""
    rows = []
    for rel in paths:
        try:
            st = os.stat(os.path.join(root, rel))
            rows.append((rel, int(st.st_size), int(st.st_mtime_ns)))
        except OSError:
            rows.append((rel, -1, -1))
    return pd.DataFrame(rows, columns=["path", "size", "mtime_ns"])


def _read_stats(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"path": str, "size": np.int64, "mtime_ns": np.int64}, keep_default_na=False)


def changed_sources(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Listed paths whose size or mtime differ (or that appeared / vanished) between two stats."""
    both = new.merge(old, on="path", how="left", suffixes=("", "_old"))
    diff = (both["size"] != both["size_old"]) | (both["mtime_ns"] != both["mtime_ns_old"])
    return both.loc[diff, "path"].tolist()


def _describe_change(old: pd.DataFrame, new: pd.DataFrame, path: str) -> str:
    def state(df):
        row = df.loc[df["path"] == path]
        if row.empty or int(row["size"].iloc[0]) < 0:
            return "missing"
        return f"{int(row['size'].iloc[0])} bytes"
    a, b = state(old), state(new)
    return f"{path}: {a} -> {b}" if a != b else f"{path}: modified"


# --------------------------------------------------------------------------- ingestion

def ingest(data_cfg: DataConfig, workers: int | None = None, progress: bool = True,
           sample_rate: int = 16_000) -> AudioStore:
    """Decode ``data_cfg``'s dataset into its store (or open it when complete and up to date).

    ``workers``: decoding processes (default: cores - 1, since this process writes the store;
    1 decodes in this process, which on 2 cores was the fastest: 95 vs 76 MTAT clips/s).
    ``sample_rate``: of the store (the run's ``AudioConfig.sample_rate``; the paper's 16 kHz).
    """
    table = read_table(data_cfg)
    root = store_root(table, data_cfg, sample_rate)
    stats = source_stats(table.root, table.tracks["path"])
    store = _up_to_date(table, root, stats)
    if store is not None:
        return store
    root.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(root):
        store = _up_to_date(table, root, stats, quiet=True)  # built by another process meanwhile?
        if store is not None:
            return store
        old = _set_aside(root)
        store, report = _build(table, data_cfg, root, stats, workers, progress, sample_rate, old)
        if old is not None:
            shutil.rmtree(old.root, ignore_errors=True)
    _summarise(table, store, report)
    return store


def _up_to_date(table: DatasetTable, root: Path, stats: pd.DataFrame, quiet: bool = False) -> AudioStore | None:
    """The complete store at ``root`` when its audio files are unchanged (printing its summary),
    else None (saying which files changed)."""
    if not (root / "COMPLETE").is_file():
        return None
    store = AudioStore.open(root)
    old = _read_stats(root / SOURCES)
    if old is None:
        print(f"[ingest] {table.name}: reusing {root} (built without {SOURCES}: changes to the audio "
              "files are not detected; delete the folder to ingest again)", flush=True)
    else:
        changed = changed_sources(old, stats)
        if changed:
            if not quiet:
                print(f"[ingest] {table.name}: {len(changed)} listed file(s) changed since {root} was "
                      f"built (e.g. {_describe_change(old, stats, changed[0])}); updating the store",
                      flush=True)
            return None
        print(f"[ingest] {table.name}: reusing {root} (audio files unchanged)", flush=True)
    _summarise(table, store, read_report(store).to_dict("records"))
    return store


def _set_aside(root: Path) -> AudioStore | None:
    """Move an out-of-date complete store to ``<root>.replaced`` (its unchanged tracks are copied,
    not decoded again) and open it; a ``.replaced`` left by an interrupted update is used again."""
    aside = root.with_name(root.name + ".replaced")
    if (root / "COMPLETE").is_file():
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(root, aside)
    if (aside / "COMPLETE").is_file() and (aside / SOURCES).is_file():
        try:
            return AudioStore.open(aside)
        except (OSError, ValueError):
            pass
    shutil.rmtree(aside, ignore_errors=True)
    return None


def _plan(tracks: pd.DataFrame, stats: pd.DataFrame, done: set[str], old: AudioStore | None) -> list[tuple]:
    """One step a row still to write, in table order: ``("decode",)``, ``("copy", index in old)``
    or ``("report", reason)`` (the last two for files unchanged since ``old`` was built)."""
    unchanged, old_rows, old_reasons = set(), {}, {}
    if old is not None:
        changed = set(changed_sources(_read_stats(old.root / SOURCES), stats))
        unchanged = set(stats["path"]) - changed
        old_rows = {t: j for j, t in enumerate(old.tracks["track_id"])}
        old_report = read_report(old)
        old_reasons = dict(zip(old_report["track_id"], old_report["reason"]))
    steps = []
    for i, (tid, path) in enumerate(zip(tracks["track_id"], tracks["path"])):
        if tid in done:
            continue
        if path in unchanged and tid in old_rows:
            steps.append((i, "copy", old_rows[tid]))
        elif path in unchanged and tid in old_reasons:
            steps.append((i, "report", old_reasons[tid]))
        else:
            steps.append((i, "decode"))
    return steps


def _open_writer(table: DatasetTable, root: Path, stats: pd.DataFrame, sample_rate: int,
                 meta: dict) -> StoreWriter:
    """A `StoreWriter` resuming ``<root>.partial``, unless a journaled track's file changed since
    (its samples would be stale): then the partial folder is started over."""
    partial = root.with_name(root.name + ".partial")
    prior = _read_stats(partial / SOURCES)
    writer = StoreWriter(root, sample_rate, table.tag_names, table.tag_families, meta, resume=True)
    done = writer.done_ids()
    if prior is not None and done:
        changed = set(changed_sources(prior, stats))
        ids = table.tracks.set_index("path")["track_id"]
        stale = [p for p in changed if p in ids.index and ids[p] in done]
        if stale:
            print(f"[ingest] {table.name}: {len(stale)} file(s) changed since the interrupted ingestion "
                  f"in {partial} (e.g. {stale[0]}); starting it over", flush=True)
            writer.close()
            writer = StoreWriter(root, sample_rate, table.tag_names, table.tag_families, meta, resume=False)
    stats.to_csv(writer.partial / SOURCES, index=False)
    return writer


def _build(table: DatasetTable, data_cfg: DataConfig, root: Path, stats: pd.DataFrame, workers: int | None,
           progress: bool, sample_rate: int, old: AudioStore | None) -> tuple[AudioStore, list[dict]]:
    """Write the store (under the lock): decode what is new or changed, copy the rest from ``old``."""
    meta = {"dataset": table.name, "dataset_family": table.dataset, "variant": table.variant,
            "root": str(Path(table.root).resolve()), "task": table.task,
            "pretrain_splits": list(table.pretrain_splits), "max_seconds": data_cfg.max_seconds,
            "expected_counts": table.expected, "listed_counts": table.counts(),
            "listed_files_present": int((stats["size"] >= 0).sum())}
    workers = max(1, int(workers or (os.cpu_count() or 2) - 1))
    tracks = table.tracks.reset_index(drop=True)
    extra_cols = [c for c in tracks.columns if c not in ("track_id", "path", "split")]
    report: list[dict[str, str]] = []
    messages: list[dict[str, str]] = []
    with _open_writer(table, root, stats, sample_rate, meta) as writer:
        done = writer.done_ids()
        if done:
            print(f"[ingest] {table.name}: resuming, {len(done)} of {len(tracks)} tracks already in "
                  f"{writer.partial}", flush=True)
        steps = _plan(tracks, stats, done, old)
        jobs = [(i, str(Path(table.root) / tracks.at[i, "path"]), int(sample_rate), data_cfg.max_seconds)
                for i, kind, *_ in steps if kind == "decode"]
        reused = f" ({len(steps) - len(jobs)} unchanged, taken from the previous store)" if old is not None else ""
        print(f"[ingest] {table.name}: decoding {len(jobs)} files{reused} from {table.root} with {workers} "
              f"worker(s) into {root}", flush=True)
        bar = _progress(len(tracks), len(done), table.name, progress)
        decoded = _decoded(jobs, workers, chunk=max(1, min(16, len(jobs) // (8 * workers) or 1)))
        for i, kind, *arg in steps:
            path, noise = tracks.at[i, "path"], ""
            if kind == "copy":
                audio, reason = old.audio(arg[0]), None
            elif kind == "report":
                audio, reason = None, arg[0]
            else:
                row, audio, reason, noise = next(decoded)
                assert row == i, (row, i)
                if reason is not None and path in table.known_broken:
                    reason = f"{table.known_broken[path]}; {reason}"
            if reason is not None:
                report.append({"track_id": tracks.at[i, "track_id"], "split": tracks.at[i, "split"],
                               "path": path, "reason": reason})
            else:
                if noise:
                    messages.append({"track_id": tracks.at[i, "track_id"], "path": path, "message": noise})
                writer.add(tracks.at[i, "track_id"], audio, tracks.at[i, "split"], table.labels[i],
                           source=path, **{c: tracks.at[i, c] for c in extra_cols})
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        pd.DataFrame(report, columns=["track_id", "split", "path", "reason"]).to_csv(
            writer.partial / "ingest_report.csv", index=False, quoting=csv.QUOTE_MINIMAL)
        if messages:
            pd.DataFrame(messages).to_csv(writer.partial / DECODER_MESSAGES, index=False)
            print(f"[ingest] {table.name}: {len(messages)} kept file(s) gave decoder messages (see "
                  f"{root / DECODER_MESSAGES})", flush=True)
        writer.meta["n_reported"] = len(report)
        store = writer.commit()
    return store, report


def _progress(total: int, initial: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"ingest {name}", unit="file")


def _summarise(table: DatasetTable, store: AudioStore, report: list[dict[str, str]]) -> None:
    """Print kept / listed / expected counts per split and the reasons; warn where the published
    count is not met, and loudly when most listed tracks are left out (wrong root, partial copy)."""
    listed = table.counts()
    kept = {s: int(c) for s, c in store.tracks["split"].value_counts(sort=False).items()}
    kinds = collections.Counter(reason_kind(r["reason"]) for r in report)
    why = ", ".join(f"{kinds[k]} {k}" for k in (*REASONS, "other") if kinds[k])
    print(f"[ingest] {table.name}: {len(store)} tracks kept, {len(report)} left out"
          + (f" ({why})" if why else "") + f" (see {store.root / 'ingest_report.csv'})", flush=True)
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
    n_listed = len(table.tracks)
    if n_listed and (n_listed - len(store)) / n_listed > ALARM_LEFT_OUT:
        counts = ", ".join(f"{k} {kinds[k]}" for k in (*REASONS, "other") if k != "other" or kinds[k])
        text = (f"{table.name}: only {len(store)} of {n_listed} listed tracks kept, "
                f"{n_listed - len(store)} left out ({counts}); is {table.root} the whole dataset "
                f"(a partial copy, a wrong root or audio folder)? See {store.root / 'ingest_report.csv'}")
        print(f"[ingest] !!! WARNING: {text}", flush=True)
        warnings.warn(text, stacklevel=3)


def read_report(store: AudioStore) -> pd.DataFrame:
    """The files left out of a store at ingestion (track_id, split, path, reason)."""
    path = Path(store.root) / "ingest_report.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["track_id", "split", "path", "reason"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


__all__ = ["DatasetTable", "UnsafePathError", "READERS", "REASONS", "ingest", "read_table", "read_report",
           "resolve_entry", "store_root", "find_file", "detect_layout", "reason_kind", "source_stats",
           "changed_sources"]
