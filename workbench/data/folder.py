"""The user's own audio: a folder as an unlabeled pretraining pool, or a folder plus a CSV of tags.

``folder``: every audio file under the root (recursively, sorted), split ``pool``, no tags;
the store's ``pretrain_splits`` is ``["pool"]``. Symlinks are followed only when they stay
inside the root.

``csv``: a CSV under the root (``variant`` = its file name; default: the only ``*.csv`` there)
with a ``path`` column (relative to the root) and a ``tags`` column, tags separated by ``;``
(or by ``,`` when the field holds no ``;``); an optional ``split`` column (train / valid /
test; ``validation``/``val`` accepted) gives user splits, otherwise a seeded random 80 / 10 / 10
split is drawn (seed `SPLIT_SEED`). When every row has exactly one tag the task is
``single_label``, else ``multi_label``. Tags are sorted by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.table import DatasetTable, resolve_entry

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".au", ".aif", ".aiff")
SPLIT_SEED = 0
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train / valid / test when the CSV has no split column
_SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
                "dev": "valid", "test": "test", "testing": "test"}


def read(root: Path, variant: str | None = None) -> DatasetTable:
    """Every audio file under ``root`` as one unlabeled ``pool`` split."""
    root = Path(root)
    if variant not in (None, "pool"):
        raise ValueError(f"dataset 'folder' has no variants (got {variant!r}); use dataset 'csv' for labels")
    real_root = root.resolve()
    paths = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith("."):
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                resolve_entry(real_root, rel, f"folder {root}")  # refuses a symlink leading out
                paths.append(rel)
        for d in list(dirnames):  # a linked folder is followed only when it stays inside
            if (Path(dirpath) / d).is_symlink():
                rel = (Path(dirpath) / d).relative_to(root).as_posix()
                resolve_entry(real_root, rel, f"folder {root}")
    if not paths:
        raise FileNotFoundError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    tracks = pd.DataFrame({"track_id": paths, "path": paths, "split": "pool"})
    return DatasetTable(dataset="folder", variant=None, root=root, tracks=tracks,
                        labels=np.zeros((len(paths), 0), np.uint8), tag_names=[], task="none",
                        pretrain_splits=["pool"])


def _split_tags(field: str) -> list[str]:
    sep = ";" if ";" in field else ","
    return [t.strip() for t in field.split(sep) if t.strip()]


def read_csv_dataset(root: Path, variant: str | None = None) -> DatasetTable:
    """A labeled dataset from ``root/<variant>`` (a CSV: path, tags[, split])."""
    root = Path(root)
    if variant is None:
        found = sorted(p.name for p in root.glob("*.csv"))
        if len(found) != 1:
            raise FileNotFoundError(f"{root}: dataset 'csv' needs the CSV named as variant (--variant FILE.csv) "
                                    f"when the root does not hold exactly one *.csv (found {found})")
        variant = found[0]
    csv_path = resolve_entry(root, variant, "the csv variant")
    if not csv_path.is_file():
        raise FileNotFoundError(f"{root}: no CSV {variant!r}")
    sep = "\t" if "\t" in csv_path.open(encoding="utf-8").readline() else ","
    df = pd.read_csv(csv_path, sep=sep, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() for c in df.columns]
    path_col = next((c for c in ("path", "file", "filename", "audio") if c in df.columns), None)
    tag_col = next((c for c in ("tags", "tag", "labels", "label") if c in df.columns), None)
    if path_col is None or tag_col is None:
        raise ValueError(f"{csv_path}: needs a 'path' and a 'tags' column, has {list(df.columns)}")
    rel_paths = []
    for entry in df[path_col]:
        rel_paths.append(resolve_entry(root, entry, csv_path.name).relative_to(root).as_posix())
    tag_lists = [_split_tags(t) for t in df[tag_col]]
    tags = sorted({t for ts in tag_lists for t in ts})
    col = {t: j for j, t in enumerate(tags)}
    labels = np.zeros((len(df), len(tags)), dtype=np.uint8)
    for i, ts in enumerate(tag_lists):
        labels[i, [col[t] for t in ts]] = 1
    if "split" in df.columns:
        unknown = sorted({s for s in df["split"] if s.strip().lower() not in _SPLIT_NAMES})
        if unknown:
            raise ValueError(f"{csv_path}: split values {unknown} not understood; use train, valid or test")
        splits = [_SPLIT_NAMES[s.strip().lower()] for s in df["split"]]
    else:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(df))
        # Valid and test get at least one track each once there are three, so a small user set
        # can still be probed and scored.
        n = len(df)
        n_valid = max(int(round(SPLIT_FRACTIONS[1] * n)), 1 if n >= 3 else 0)
        n_test = max(int(round(SPLIT_FRACTIONS[2] * n)), 1 if n >= 3 else 0)
        n_train = n - n_valid - n_test
        splits = np.empty(len(df), dtype=object)
        splits[order[:n_train]] = "train"
        splits[order[n_train:n_train + n_valid]] = "valid"
        splits[order[n_train + n_valid:]] = "test"
        splits = list(splits)
    task = "single_label" if tag_lists and all(len(ts) == 1 for ts in tag_lists) else "multi_label"
    tracks = pd.DataFrame({"track_id": rel_paths, "path": rel_paths, "split": splits})
    return DatasetTable(dataset="csv", variant=Path(variant).stem, root=root, tracks=tracks, labels=labels,
                        tag_names=tags, task=task, pretrain_splits=["train"])

