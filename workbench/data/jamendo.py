"""MTG-Jamendo (Bogdanov et al., ICML 2019 ML4MD workshop), split-0 of MTG/mtg-jamendo-dataset.

Variants: ``top50``, ``genre``, ``instrument``, ``moodtheme`` (``autotagging_{subset}-{split}.tsv``)
and ``all`` (``autotagging-{split}.tsv``, 183 tags); the default is ``top50``. The TSV files are
TAB-separated with CRLF line endings and a header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION
TAGS``; from the sixth column on, one ``category---tag`` a column (a trailing ``\\r`` stripped).
They sit under the root or under ``data/splits/split-0/`` (the repository layout).

Audio: full tracks ``NN/ID.mp3`` or the low-quality copy ``NN/ID.low.mp3``, under the root or
under ``audio/`` / ``audio-low/``; the layout is the one under which most listed files exist
(counted over all rows, so a partial copy is still found), and it is printed. Tracks are
minutes long (some over an hour): `DataConfig.max_seconds` caps what is decoded.
Tag names keep their category (``genre---rock``); tag families are the categories.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.table import DatasetTable, detect_layout, find_file, resolve_entry

VARIANTS = ("top50", "genre", "instrument", "moodtheme", "all")
_FILE_STEM = {"top50": "autotagging_top50tags", "genre": "autotagging_genre",
              "instrument": "autotagging_instrument", "moodtheme": "autotagging_moodtheme", "all": "autotagging"}
SPLITS = {"train": "train", "validation": "valid", "test": "test"}  # file name -> store split
EXPECTED = {
    "top50": {"train": 32_136, "valid": 10_888, "test": 11_356},
    "genre": {"train": 32_572, "valid": 11_043, "test": 11_479},
    "instrument": {"train": 14_395, "valid": 5_466, "test": 5_115},
    "moodtheme": {"train": 9_949, "valid": 3_802, "test": 4_231},
    "all": {},  # not listed in shared/DATASETS.md
}
_TSV_DIRS = ("", "data/splits/split-0", "splits/split-0", "split-0", "data/splits", "splits")
_AUDIO_DIRS = ("", "audio", "audio-low", "mp3", "raw_30s_audio", "raw_30s_audio-low")


def read_tsv(path: Path) -> list[tuple[str, str, float, list[str]]]:
    """One autotagging TSV -> [(track_id, PATH, duration, [category---tag, ...])]."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    header = lines[0].split("\t") if lines else []
    if header[:6] != ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]:
        raise ValueError(f"{path}: expected header TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS, got {header}")
    out = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 5:
            raise ValueError(f"{path}: line {n} has {len(cols)} columns, expected at least 5")
        tags = [t.strip("\r") for t in cols[5:] if t.strip("\r")]
        bad = [t for t in tags if "---" not in t]
        if bad:
            raise ValueError(f"{path}: line {n}: tag {bad[0]!r} is not 'category---tag'")
        out.append((cols[0], cols[3], float(cols[4]), tags))
    return out


def _audio_layout(root: Path, rows: list[tuple[str, str, float, list[str]]]) -> tuple[str, str]:
    """(audio folder relative to root, suffix '.mp3' | '.low.mp3') under which most listed files
    exist, counted over every row (a partial copy may lack the first ones); printed."""
    stems = [rel[:-4] if rel.endswith(".mp3") else rel for _, rel, _, _ in rows]
    layouts = {(d, suffix): [posixpath.join(d, stem + suffix) for stem in stems]
               for d in _AUDIO_DIRS for suffix in (".mp3", ".low.mp3")}
    return detect_layout(root, layouts, "MTG-Jamendo", describe=lambda k: f"{k[0] or '.'}/NN/ID{k[1]}")


def read(root: Path, variant: str | None = None) -> DatasetTable:
    root = Path(root)
    variant = variant or "top50"
    if variant not in VARIANTS:
        raise ValueError(f"unknown MTG-Jamendo variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    per_split = {}
    for fname, split in SPLITS.items():
        name = f"{_FILE_STEM[variant]}-{fname}.tsv"
        path = find_file(root, [name], _TSV_DIRS)
        if path is None:
            raise FileNotFoundError(f"{root}: MTG-Jamendo {variant} needs {name} (searched "
                                    f"{', '.join(repr(d or '.') for d in _TSV_DIRS)})")
        per_split[split] = (path.name, read_tsv(path))
    all_rows = [r for _, rows in per_split.values() for r in rows]
    folder, suffix = _audio_layout(root, all_rows)
    audio_root = root / folder if folder else root
    # Vocabulary: every tag seen in the three files, grouped by category, sorted (stable, documented).
    tags = sorted({t for r in all_rows for t in r[3]}, key=lambda t: (t.split("---", 1)[0], t))
    col = {t: j for j, t in enumerate(tags)}
    ids, paths, splits, durations = [], [], [], []
    labels = np.zeros((len(all_rows), len(tags)), dtype=np.uint8)
    i = 0
    for split, (source, rows) in per_split.items():
        for track_id, rel, duration, row_tags in rows:
            stem = rel[:-4] if rel.endswith(".mp3") else rel
            p = resolve_entry(audio_root, stem + suffix, source)
            ids.append(track_id)
            paths.append(p.relative_to(root).as_posix())
            splits.append(split)
            durations.append(duration)
            labels[i, [col[t] for t in row_tags]] = 1
            i += 1
    families: dict[str, list[str]] = {}
    for t in tags:
        families.setdefault(t.split("---", 1)[0], []).append(t)
    tracks = pd.DataFrame({"track_id": ids, "path": paths, "split": splits, "duration": durations})
    return DatasetTable(dataset="jamendo", variant=variant, root=root, tracks=tracks, labels=labels,
                        tag_names=tags, task="multi_label", tag_families=families,
                        expected=dict(EXPECTED[variant]), pretrain_splits=["train"])
