"""The audio store: decoded 16 kHz audio of a whole dataset in one memory-mapped int16 array.

Drawing a segment costs no decoding and no per-file open: every track lives back to back in
``audio.i16`` and an index (``tracks.csv``) gives its offset and length in samples. Layout of a
store folder::

    audio.i16    raw int16, all tracks back to back, each peak-normalised to full scale
    tracks.csv   track_id, split, offset, length, source, + free metadata columns (one row a track)
    labels.npy   (N, K) uint8 multi-hot tags, row i belongs to track i
    tags.json    {"tags": [K names], "families": {"style": [...], ...}}
    meta.json    sample_rate, n_tracks, dataset, pretrain_splits, params, ...
    COMPLETE     marker written last; a folder without it is never opened

`StoreWriter` writes into ``<root>.partial/`` and renames it to ``<root>`` in `commit`, so an
interrupted write never looks complete. The partial folder keeps a journal (one JSON line per
track, written after the track's samples) so that ``StoreWriter(root, ..., resume=True)`` cuts
``audio.i16`` back to the last journaled track and carries on; `done_ids` tells the caller which
tracks to skip.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

# int16 full scale; float audio in [-1, 1] maps to [-32767, 32767] (symmetric, no -32768).
_SCALE = 32767.0
_JOURNAL = "journal.jsonl"
_HEADER = "writer.json"
_BASE_COLUMNS = ("track_id", "split", "offset", "length", "source")


class StoreError(ValueError):
    """A store folder that cannot be opened or written as asked (the message names the path)."""


def _partial_path(root: Path) -> Path:
    return root.with_name(root.name + ".partial")


class AudioStore:
    """A complete store folder opened read-only; see the module docstring for the layout.

    Attributes: ``root``, ``sample_rate``, ``tracks`` (pd.DataFrame, one row a track),
    ``labels`` (N, K) uint8, ``tag_names`` (K names), ``tag_families`` (family -> tag names),
    ``meta`` (dict), ``samples`` (np.memmap int16 of every track back to back).
    """

    def __init__(self, root: Path, tracks: pd.DataFrame, labels: np.ndarray, tags: dict[str, Any],
                 meta: dict[str, Any], samples: np.ndarray):
        self.root = root
        self.tracks = tracks
        self.labels = labels
        self.tag_names: list[str] = list(tags["tags"])
        self.tag_families: dict[str, list[str]] = {k: list(v) for k, v in tags.get("families", {}).items()}
        self.meta = meta
        self.sample_rate = int(meta["sample_rate"])
        self.samples = samples
        self.offsets = tracks["offset"].to_numpy(np.int64)
        self.lengths = tracks["length"].to_numpy(np.int64)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "AudioStore":
        """Open a complete store; a missing, incomplete or inconsistent folder raises naming it."""
        root = Path(root)
        if not root.is_dir():
            hint = ""
            if _partial_path(root).is_dir():
                hint = (f"; an interrupted write exists at {_partial_path(root)}: resume it with "
                        "StoreWriter(root, ..., resume=True)")
            raise FileNotFoundError(f"no audio store at {root} (expected a folder with audio.i16, "
                                    f"tracks.csv, labels.npy, tags.json, meta.json, COMPLETE){hint}")
        if not (root / "COMPLETE").is_file():
            raise StoreError(f"audio store {root} is incomplete (no COMPLETE marker); it was not "
                             "committed by StoreWriter.commit(): delete it and write it again")
        for name in ("audio.i16", "tracks.csv", "labels.npy", "tags.json", "meta.json"):
            if not (root / name).is_file():
                raise StoreError(f"audio store {root} is missing {name}")
        meta = json.loads((root / "meta.json").read_text())
        tags = json.loads((root / "tags.json").read_text())
        tracks = pd.read_csv(root / "tracks.csv", dtype={"track_id": str, "split": str, "source": str},
                             keep_default_na=False)
        labels = np.load(root / "labels.npy")
        n, k = len(tracks), len(tags["tags"])
        if labels.shape != (n, k):
            raise StoreError(f"audio store {root}: labels.npy has shape {labels.shape}, expected "
                             f"({n}, {k}) = (tracks in tracks.csv, tags in tags.json)")
        end = int((tracks["offset"] + tracks["length"]).max()) if n else 0
        size = (root / "audio.i16").stat().st_size
        if size != 2 * end:
            raise StoreError(f"audio store {root}: audio.i16 holds {size // 2} samples, tracks.csv "
                             f"expects {end}")
        samples = (np.memmap(root / "audio.i16", dtype=np.int16, mode="r") if end
                   else np.zeros(0, dtype=np.int16))
        return cls(root, tracks, labels, tags, meta, samples)

    def __reduce__(self):
        # Pickle (worker processes) by path: the memmap is reopened, not copied.
        return (AudioStore.open, (self.root,))

    def __len__(self) -> int:
        return len(self.tracks)

    def audio(self, i: int) -> np.ndarray:
        """Track ``i`` as float32 (S,) in [-1, 1]."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"track index {i} out of range for a store of {len(self)} tracks")
        start = self.offsets[i]
        return self.samples[start:start + self.lengths[i]].astype(np.float32) * np.float32(1.0 / _SCALE)

    def indices(self, split: str | Iterable[str]) -> np.ndarray:
        """Track indices (int64, ascending) of one split or of several."""
        splits = [split] if isinstance(split, str) else list(split)
        present = set(self.tracks["split"])
        unknown = [s for s in splits if s not in present]
        if unknown:
            raise KeyError(f"split(s) {unknown} not in store {self.root}; it has {sorted(present)}")
        return np.flatnonzero(self.tracks["split"].isin(splits).to_numpy()).astype(np.int64)

    def split_labels(self, split: str | Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(indices (N,), labels (N, K) uint8)`` of a split."""
        idx = self.indices(split)
        return idx, self.labels[idx]

    def segments(self, track_idx: np.ndarray, starts: np.ndarray, length: int,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Gather B segments at once: track_idx (B,), starts (B,) in samples -> float32 (B, length).

        One fancy-indexing read over a sliding-window view of the memmap (no per-track loop and
        no (B, length) index array). ``out`` (B, length) float32 receives the result (a slice of
        a pinned buffer, say); NumPy releases the GIL in both copies, so threads gathering
        disjoint rows run in parallel (`workbench.data.prefetch`).
        """
        track_idx = np.asarray(track_idx, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        if track_idx.ndim != 1 or starts.shape != track_idx.shape:
            raise ValueError(f"segments: track_idx and starts must both be (B,), got "
                             f"{track_idx.shape} and {starts.shape}")
        length = int(length)
        if length <= 0:
            raise ValueError(f"segments: length must be positive, got {length}")
        if out is not None and (out.shape != (len(track_idx), length) or out.dtype != np.float32):
            raise ValueError(f"segments: out must be float32 {(len(track_idx), length)}, got {out.dtype} {out.shape}")
        if len(track_idx) == 0:
            return np.zeros((0, length), dtype=np.float32) if out is None else out
        if track_idx.min() < 0 or track_idx.max() >= len(self):
            raise IndexError(f"segments: track index out of range [0, {len(self)})")
        over = (starts < 0) | (starts + length > self.lengths[track_idx])
        if over.any():
            j = int(np.flatnonzero(over)[0])
            raise ValueError(f"segments: segment {j} [{starts[j]}, {starts[j] + length}) is outside "
                             f"track {track_idx[j]} of {self.lengths[track_idx[j]]} samples")
        windows = np.lib.stride_tricks.sliding_window_view(self.samples, length)
        raw = windows[self.offsets[track_idx] + starts]  # int16 (B, length)
        if out is None:
            out = np.empty(raw.shape, dtype=np.float32)
        np.multiply(raw, np.float32(1.0 / _SCALE), out=out)
        return out

    def on_device(self, device: str | torch.device) -> "DeviceSamples":
        """The samples copied to ``device`` as int16, for gathering views there (`DeviceSamples`)."""
        return DeviceSamples(self, device)

    def __repr__(self) -> str:
        counts = self.tracks["split"].value_counts()
        splits = ", ".join(f"{s} {counts[s]}" for s in dict.fromkeys(self.tracks["split"]))
        hours = self.lengths.sum() / self.sample_rate / 3600
        return (f"AudioStore({str(self.root)!r}, {len(self)} tracks [{splits}], "
                f"{len(self.tag_names)} tags, {hours:.2f} h at {self.sample_rate} Hz)")


class StoreWriter:
    """Append tracks into ``<root>.partial/`` and commit them atomically into ``<root>``.

    ``resume=True`` carries on from an interrupted write (same sample rate and tags); without it
    a left-over partial folder is discarded. Used as a context manager, an exception leaves the
    partial folder for a later resume and a clean exit commits if `commit` was not called.
    """

    def __init__(self, root: str | os.PathLike, sample_rate: int, tag_names: list[str],
                 tag_families: dict[str, list[str]] | None = None, meta: dict[str, Any] | None = None,
                 resume: bool = False):
        self.root = Path(root)
        self.partial = _partial_path(self.root)
        self.sample_rate = int(sample_rate)
        self.tag_names = [str(t) for t in tag_names]
        if len(set(self.tag_names)) != len(self.tag_names):
            raise ValueError(f"StoreWriter {self.root}: duplicate tag names in {self.tag_names}")
        self.tag_families = {k: list(v) for k, v in (tag_families or {}).items()}
        for family, names in self.tag_families.items():
            missing = [t for t in names if t not in self.tag_names]
            if missing:
                raise ValueError(f"StoreWriter {self.root}: tag family {family!r} names unknown tags {missing}")
        self.meta = dict(meta or {})
        if self.root.exists():
            raise StoreError(f"StoreWriter: {self.root} already exists; open it with AudioStore.open "
                             "or delete it to write it again")
        header = {"sample_rate": self.sample_rate, "tags": self.tag_names}
        self._rows: list[dict[str, Any]] = []
        self._end = 0
        if resume and (self.partial / _HEADER).is_file():
            old = json.loads((self.partial / _HEADER).read_text())
            if old != header:
                raise StoreError(f"StoreWriter: cannot resume {self.partial}: it was written with "
                                 f"sample_rate {old['sample_rate']} and {len(old['tags'])} tags, now "
                                 f"{self.sample_rate} and {len(self.tag_names)}")
            self._rows = self._read_journal()
            self._end = self._rows[-1]["offset"] + self._rows[-1]["length"] if self._rows else 0
            with open(self.partial / "audio.i16", "ab") as f:
                f.truncate(2 * self._end)  # drop samples of a track whose journal line was not written
        else:
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
            (self.partial / _HEADER).write_text(json.dumps(header))
            (self.partial / "audio.i16").touch()
            (self.partial / _JOURNAL).touch()
        self._ids = {r["track_id"] for r in self._rows}
        self._audio = open(self.partial / "audio.i16", "ab")
        self._journal = open(self.partial / _JOURNAL, "a")
        self._committed: AudioStore | None = None

    def _read_journal(self) -> list[dict[str, Any]]:
        rows = []
        with open(self.partial / _JOURNAL) as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line cut by the interruption: that track is written again
                rows.append(json.loads(line))
        size = (self.partial / "audio.i16").stat().st_size // 2
        if rows and rows[-1]["offset"] + rows[-1]["length"] > size:
            raise StoreError(f"StoreWriter: cannot resume {self.partial}: journal expects "
                             f"{rows[-1]['offset'] + rows[-1]['length']} samples, audio.i16 holds {size}")
        with open(self.partial / _JOURNAL, "w") as f:  # rewrite without a cut last line
            f.writelines(json.dumps(r) + "\n" for r in rows)
        return rows

    def done_ids(self) -> set[str]:
        """Track ids already written (after a resume: the ones to skip)."""
        return set(self._ids)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, track_id: str, audio: np.ndarray, split: str, labels: np.ndarray | None = None,
            **extra_columns: Any) -> None:
        """Append one track: audio float (S,) (peak-normalised here), labels (K,) 0/1 (None: all 0).

        ``extra_columns`` become columns of tracks.csv (``source`` is always one, default "").
        """
        track_id = str(track_id)
        if self._committed is not None:
            raise StoreError(f"StoreWriter {self.root}: already committed")
        if track_id in self._ids:
            raise ValueError(f"StoreWriter {self.root}: duplicate track id {track_id!r}")
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise ValueError(f"StoreWriter {self.root}: track {track_id!r} audio must be mono (S,), "
                             f"got shape {audio.shape}")
        if audio.size == 0:
            raise ValueError(f"StoreWriter {self.root}: track {track_id!r} has no samples")
        if not np.isfinite(audio).all():
            raise ValueError(f"StoreWriter {self.root}: track {track_id!r} has non-finite samples")
        k = len(self.tag_names)
        labels = np.zeros(k, np.uint8) if labels is None else np.asarray(labels)
        if labels.shape != (k,):
            raise ValueError(f"StoreWriter {self.root}: track {track_id!r} labels have shape "
                             f"{labels.shape}, expected ({k},) for the {k} tag names")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"StoreWriter {self.root}: track {track_id!r} labels must be 0/1")
        bad = [c for c in extra_columns if c in (*_BASE_COLUMNS[:4], "labels")]
        if bad:
            raise ValueError(f"StoreWriter {self.root}: extra columns {bad} clash with index columns")
        peak = float(np.abs(audio).max())
        x = audio.astype(np.float64) / peak if peak > 0 else audio.astype(np.float64)
        pcm = np.round(x * _SCALE).astype("<i2")
        self._audio.write(pcm.tobytes())
        self._audio.flush()  # samples first, journal line second: a journal line implies its audio
        row = {"track_id": track_id, "split": str(split), "offset": self._end, "length": int(audio.size),
               "source": str(extra_columns.pop("source", "")),
               "labels": labels.astype(int).tolist(), **extra_columns}
        self._journal.write(json.dumps(row, default=_json_default) + "\n")
        self._journal.flush()
        self._rows.append(row)
        self._ids.add(track_id)
        self._end += int(audio.size)

    def commit(self) -> AudioStore:
        """Write the index files and the COMPLETE marker, then rename the partial folder to root."""
        if self._committed is not None:
            return self._committed
        self._audio.close()
        self._journal.close()
        p = self.partial
        rows = [{k: v for k, v in r.items() if k != "labels"} for r in self._rows]
        tracks = pd.DataFrame(rows, columns=list(dict.fromkeys([*_BASE_COLUMNS, *(k for r in rows for k in r)])))
        tracks.to_csv(p / "tracks.csv", index=False)
        k = len(self.tag_names)
        labels = np.array([r["labels"] for r in self._rows], dtype=np.uint8).reshape(len(rows), k)
        np.save(p / "labels.npy", labels)
        (p / "tags.json").write_text(json.dumps({"tags": self.tag_names, "families": self.tag_families}, indent=1))
        # Default pretraining splits: the unlabeled pool when there is one, else train (never test).
        present = set(tracks["split"])
        meta = {"pretrain_splits": ["pool"] if "pool" in present or not present else ["train"], **self.meta,
                "sample_rate": self.sample_rate, "n_tracks": len(rows),
                "n_samples": int(self._end), "splits": dict(tracks["split"].value_counts().items())}
        (p / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        with open(p / "audio.i16", "rb+") as f:
            os.fsync(f.fileno())
        (p / _JOURNAL).unlink()
        (p / _HEADER).unlink()
        (p / "COMPLETE").write_text("ok\n")
        os.replace(p, self.root)
        self._committed = AudioStore.open(self.root)
        return self._committed

    def close(self) -> None:
        """Close the files and leave the partial folder for a resume."""
        self._audio.close()
        self._journal.close()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.close()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


class DeviceSamples:
    """Every sample of a store on a device (int16, 2 bytes a sample: the embedded demo corpus
    0.5 GB, MagnaTagATune about 12 GB), and `segments` gathering there: a batch of views costs
    no host work but the draw of its indices and no host-to-device copy of audio. This is what
    lets one GPU be fed at its compute rate (``python -m workbench.bench data``); a store larger
    than the device's memory stays on the host (threads, pinned memory: `workbench.data.prefetch`).
    """

    def __init__(self, store: AudioStore, device: str | torch.device):
        self.device = torch.device(device)
        self.samples = torch.empty(len(store.samples), dtype=torch.int16, device=self.device)
        chunk = 1 << 26  # 128 MB of int16 at a time: no host copy of the whole memmap
        for lo in range(0, len(store.samples), chunk):
            self.samples[lo:lo + chunk].copy_(torch.from_numpy(np.array(store.samples[lo:lo + chunk])))
        self.offsets = torch.tensor(store.offsets, dtype=torch.int64, device=self.device)
        self.lengths = store.lengths

    @staticmethod
    def bytes_needed(store: AudioStore) -> int:
        return int(store.samples.nbytes)

    def segments(self, track_idx: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
        """The same values as `AudioStore.segments`, as a float32 (B, length) tensor on the device."""
        track_idx, starts = np.asarray(track_idx, dtype=np.int64), np.asarray(starts, dtype=np.int64)
        over = (starts < 0) | (starts + length > self.lengths[track_idx])
        if over.any():
            j = int(np.flatnonzero(over)[0])
            raise ValueError(f"segments: segment {j} [{starts[j]}, {starts[j] + length}) is outside "
                             f"track {track_idx[j]} of {self.lengths[track_idx[j]]} samples")
        first = self.offsets[torch.from_numpy(track_idx).to(self.device)] + torch.from_numpy(starts).to(self.device)
        windows = self.samples.unfold(0, length, 1)  # (N - length + 1, length), a view
        return windows[first].to(torch.float32).mul_(np.float32(1.0 / _SCALE))
