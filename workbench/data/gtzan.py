"""GTZAN (Tzanetakis and Cook 2002), fault-filtered split of Kereliuk, Sturm and Larsen (2015).

``{train,valid,test}_filtered.txt``: one ``genre/genre.000NN.wav`` a line (443 / 197 / 290
tracks), under the root or under ``GTZAN_split/`` (jongpillee/music_dataset_split) or ``splits/``.
Audio under the root, ``genres/``,
``genres_original/`` (the Kaggle copy) or ``Data/genres_original/``; the original ``.au`` files
are accepted where the ``.wav`` named in the list is absent. The audio folder is the one under
which most listed files exist (all entries counted), and it is printed. Single-label, 10 genres; the
label matrix is one-hot and the store meta says ``task: single_label`` (metric: accuracy).
One variant only (``filtered``).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.table import DatasetTable, detect_layout, find_file, resolve_entry

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SPLITS = ("train", "valid", "test")
EXPECTED = {"train": 443, "valid": 197, "test": 290}
_LIST_DIRS = ("", "GTZAN_split", "music_dataset_split/GTZAN_split", "splits", "split", "gtzan_split")
_AUDIO_DIRS = ("", "genres", "genres_original", "Data/genres_original", "wav")


def _audio_dir(root: Path, entries: list[str]) -> str:
    """The audio folder under which most listed files exist (``.wav`` or ``.au``), counted over
    every entry: in a partial copy the first ones may be absent; printed."""
    layouts = {}
    for d in _AUDIO_DIRS:
        layouts[d] = [(posixpath.join(d, e), posixpath.join(d, posixpath.splitext(e)[0] + ".au"))
                      for e in (e.replace("\\", "/") for e in entries)]
    return detect_layout(root, layouts, "GTZAN", describe=lambda d: f"{d or '.'}/<genre>/")


def read(root: Path, variant: str | None = None) -> DatasetTable:
    root = Path(root)
    if variant not in (None, "filtered"):
        raise ValueError(f"unknown GTZAN variant {variant!r}; the one split is 'filtered' (Kereliuk and Sturm)")
    entries: list[tuple[str, str, str]] = []  # (split, entry, list file name)
    for split in SPLITS:
        path = find_file(root, [f"{split}_filtered.txt"], _LIST_DIRS)
        if path is None:
            raise FileNotFoundError(f"{root}: GTZAN needs {split}_filtered.txt (searched "
                                    f"{', '.join(repr(d or '.') for d in _LIST_DIRS)})")
        with open(path, encoding="utf-8") as f:
            entries += [(split, line.strip(), path.name) for line in f if line.strip()]
    audio_dir = _audio_dir(root, [e for _, e, _ in entries])
    base = root / audio_dir if audio_dir else root
    ids, paths, splits = [], [], []
    labels = np.zeros((len(entries), len(GENRES)), dtype=np.uint8)
    for i, (split, entry, source) in enumerate(entries):
        genre = entry.replace("\\", "/").split("/")[0]
        if genre not in GENRES:
            raise ValueError(f"{source}: entry {entry!r} is not in one of the genre folders {', '.join(GENRES)}")
        p = resolve_entry(base, entry, source)
        if not p.is_file() and p.with_suffix(".au").is_file():
            p = p.with_suffix(".au")
        ids.append(Path(entry).stem)  # e.g. blues.00012
        paths.append(p.relative_to(root).as_posix())
        splits.append(split)
        labels[i, GENRES.index(genre)] = 1
    tracks = pd.DataFrame({"track_id": ids, "path": paths, "split": splits})
    return DatasetTable(dataset="gtzan", variant="filtered", root=root, tracks=tracks, labels=labels,
                        tag_names=list(GENRES), task="single_label", tag_families={"genre": list(GENRES)},
                        expected=dict(EXPECTED), pretrain_splits=["train"])
