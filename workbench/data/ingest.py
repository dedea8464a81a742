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
import csv
import hashlib
import importlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.config import DataConfig, data_dir
from workbench.data.decode import REASONS, decoded_tracks, reason_kind
from workbench.data.store import AudioStore, StoreWriter
from workbench.data.table import DatasetTable
from workbench.locks import build_lock

# Dataset name -> module whose ``read(root, variant) -> DatasetTable`` parses its metadata.
# Module names rather than functions: the readers import `DatasetTable` from here.
READERS = {
    "mtat": "workbench.data.mtat",
    "jamendo": "workbench.data.jamendo",
    "gtzan": "workbench.data.gtzan",
    "folder": "workbench.data.folder",
    "csv": "workbench.data.folder",
}
STORE_FORMAT = 1  # bump when what the store holds for the same inputs changes
ALARM_LEFT_OUT = 0.5  # above this share of listed tracks left out, a loud warning (wrong root?)
SOURCES = "sources.csv"  # path, size, mtime_ns of every listed file at build time (-1: missing)
DECODER_MESSAGES = "decoder_messages.csv"


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
        decoded = decoded_tracks(jobs, workers, chunk=max(1, min(16, len(jobs) // (8 * workers) or 1)))
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


__all__ = ["READERS", "ingest", "read_table", "read_report", "store_root", "source_stats", "changed_sources"]
