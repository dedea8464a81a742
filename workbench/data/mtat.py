"""MagnaTagATune (Law et al., ISMIR 2009): split A (two distributed forms) and split B.

Variants (the variant is part of the dataset name, e.g. ``mtat-A``, and of every result row;
scores on A and B are not comparable, shared/DATASETS.md):

- ``A``: Lee et al. 2017 (sample-level CNN; the paper's code), jongpillee/music_dataset_split:
  ``{train,valid,test}_list_pub.cP`` Python-2 protocol-0 pickles of ``c/name-117-146.npy``
  strings (``.npy`` -> ``.mp3``) and ``y_{split}_pub.npy`` (N, 50) labels in `TOP50_A` order.
- ``A-sota``: the same split as distributed by minzwon/sota-music-tagging-models:
  ``{train,valid,test}.npy`` arrays of ``"ROWIDX\\tfolder/file.mp3"``, ``binary.npy``
  (rows, 50) indexed by ROWIDX and ``tags.npy`` (50 names).
- ``B``: Dieleman and Schrauwen 2014 / Pons et al. folder split (CLMR, MARBLE): folders 0-b
  train, c valid, d-f test; tags = the 50 largest column sums of ``annotations_final.csv``.

Without a variant the reader takes A when its pickles are under the root, else A-sota, else B.
Audio folders ``0``..``f`` sit directly under the root or under ``mp3/``.
"""

from __future__ import annotations

import csv
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.table import DatasetTable, find_file, resolve_entry

VARIANTS = ("A", "A-sota", "B")
SPLITS = ("train", "valid", "test")
# top50_tags.txt of jongpillee/music_dataset_split, the column order of y_*_pub.npy.
TOP50_A = ("guitar classical slow techno strings drums electronic rock fast piano ambient beat violin "
           "vocal synth female indian opera male singing vocals noVocals harpsichord loud quiet flute "
           "woman maleVocal noVocal pop soft sitar solo man classic choir voice newAge dance maleVoice "
           "femaleVocal beats harp cello noVoice weird country femaleVoice metal choral").split()
EXPECTED = {
    "A": {"train": 15_244, "valid": 1_529, "test": 4_332},
    "A-sota": {"train": 15_247, "valid": 1_529, "test": 4_332},
    "B": {"train": 18_706, "valid": 1_825, "test": 5_329},
}
# Empty or corrupt in every copy; clip ids and paths as listed by the Pons et al. split script
# (jordipons/musicnn-training) and the sota-music-tagging-models preprocessing.
KNOWN_BROKEN = {
    "6/norine_braun-now_and_zen-08-gently-117-146.mp3": "35644",
    "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3": "55753",
    "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin-88-117.mp3":
        "57881",
}
_FOLDER_SPLIT = {**{c: "train" for c in "0123456789ab"}, "c": "valid", **{c: "test" for c in "def"}}
_SPLIT_DIRS = ("", "MTAT_split", "split", "splits", "music_dataset_split/MTAT_split",
               "music_dataset_split-master/MTAT_split")
_SOTA_DIRS = ("", "split/mtat", "mtat", "split", "splits")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Lists of strings need no classes; refusing them keeps a pickle from running code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"split list pickles hold only strings; refused global {module}.{name}")


def load_list_pickle(path: Path) -> list[str]:
    """A ``*_list_pub.cP`` file: Python-2 protocol-0 pickle of a list of str (latin1 decoding)."""
    with open(path, "rb") as f:
        items = _NoGlobalsUnpickler(f, encoding="latin1").load()
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, (str, bytes)) for s in items):
        raise ValueError(f"{path}: expected a pickled list of strings, got {type(items).__name__}")
    return [s.decode("latin1") if isinstance(s, bytes) else s for s in items]


def read_annotations(path: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """``annotations_final.csv`` -> (clip_ids, mp3_paths, 188 tag names, (N, 188) uint8).

    TAB-separated, every field double-quoted, CRLF line endings; header clip_id, tags, mp3_path.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quotechar='"'))
    if not rows or rows[0][0] != "clip_id" or rows[0][-1] != "mp3_path":
        head = rows[0][:2] + ["..."] + rows[0][-1:] if rows else []
        raise ValueError(f"{path}: expected a header clip_id, <tags>, mp3_path; got {head}")
    tags = rows[0][1:-1]
    body = [r for r in rows[1:] if r]
    bad = next((i for i, r in enumerate(body) if len(r) != len(rows[0])), None)
    if bad is not None:
        raise ValueError(f"{path}: line {bad + 2} has {len(body[bad])} fields, header has {len(rows[0])}")
    try:
        y = np.array([[int(v) for v in r[1:-1]] for r in body], dtype=np.uint8).reshape(len(body), len(tags))
    except ValueError as err:
        raise ValueError(f"{path}: tag values must be 0/1 ({err})") from None
    return [r[0] for r in body], [r[-1] for r in body], tags, y


def _audio_prefix(root: Path) -> str:
    """'' when the 0..f folders are under root, 'mp3' when under root/mp3."""
    for prefix in ("", "mp3", "audio"):
        if any((root / prefix / c).is_dir() for c in "0123456789abcdef"):
            return prefix
    return ""


def _resolve(root: Path, prefix: str, entry: str, source: str) -> str:
    """Checked path of an audio entry, relative to root (POSIX)."""
    p = resolve_entry(root / prefix if prefix else root, entry, source)
    return p.relative_to(root).as_posix()


def _detect_variant(root: Path) -> str:
    if find_file(root, ["train_list_pub.cP"], _SPLIT_DIRS):
        return "A"
    if find_file(root, ["binary.npy"], _SOTA_DIRS):
        return "A-sota"
    if find_file(root, ["annotations_final.csv"]):
        return "B"
    raise FileNotFoundError(f"{root}: no MTAT metadata found (train_list_pub.cP for split A, binary.npy "
                            "for A-sota, annotations_final.csv for split B)")


def canonical_tag(name: str) -> str:
    """One name per tag across splits: MTAT's own spelling (annotations_final.csv, used by split B
    and A-sota), lower case with spaces. Split A's list writes some in camelCase (``noVocals``,
    ``newAge``, ``femaleVoice``): ``canonical_tag("noVocals") == "no vocals"``."""
    return re.sub(r"(?<=[a-z])([A-Z])", lambda m: " " + m.group(1).lower(), name.strip()).lower()


def read(root: Path, variant: str | None = None) -> DatasetTable:
    root = Path(root)
    variant = variant or _detect_variant(root)
    if variant not in VARIANTS:
        raise ValueError(f"unknown MTAT variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    prefix = _audio_prefix(root)
    if variant == "A":
        paths, splits, labels, tags = _read_a(root, prefix)
    elif variant == "A-sota":
        paths, splits, labels, tags = _read_a_sota(root, prefix)
    else:
        paths, splits, labels, tags, clip_ids = _read_b(root, prefix)
    tracks = pd.DataFrame({"track_id": paths, "path": paths, "split": splits})
    if variant == "B":
        tracks["clip_id"] = clip_ids
    known = {}
    for p in paths:
        rel = p[len(prefix) + 1:] if prefix else p
        if rel in KNOWN_BROKEN:
            known[p] = f"known broken MTAT clip {KNOWN_BROKEN[rel]}"
    return DatasetTable(dataset="mtat", variant=variant, root=root, tracks=tracks, labels=labels,
                        tag_names=[canonical_tag(t) for t in tags], task="multi_label",
                        expected=dict(EXPECTED[variant]), known_broken=known, pretrain_splits=["train"])


def _read_a(root: Path, prefix: str):
    paths, splits, ys = [], [], []
    for split in SPLITS:
        plist = find_file(root, [f"{split}_list_pub.cP"], _SPLIT_DIRS)
        if plist is None:
            raise FileNotFoundError(f"{root}: MTAT split A needs {split}_list_pub.cP (searched "
                                    f"{', '.join(repr(d or '.') for d in _SPLIT_DIRS)})")
        ypath = plist.parent / f"y_{split}_pub.npy"
        if not ypath.is_file():
            raise FileNotFoundError(f"{root}: MTAT split A needs {ypath.name} next to {plist.name}")
        entries = load_list_pickle(plist)
        y = np.load(ypath, allow_pickle=False)
        if y.shape != (len(entries), len(TOP50_A)):
            raise ValueError(f"{ypath} has shape {y.shape}, expected ({len(entries)}, 50): one row per "
                             f"entry of {plist.name}")
        for e in entries:
            mp3 = e[:-4] + ".mp3" if e.endswith(".npy") else e
            paths.append(_resolve(root, prefix, mp3, plist.name))
            splits.append(split)
        ys.append((np.asarray(y) > 0).astype(np.uint8))
    return paths, splits, np.concatenate(ys), TOP50_A


def _read_a_sota(root: Path, prefix: str):
    binary_path = find_file(root, ["binary.npy"], _SOTA_DIRS)
    if binary_path is None:
        raise FileNotFoundError(f"{root}: MTAT A-sota needs binary.npy, tags.npy and train/valid/test.npy")
    d = binary_path.parent
    try:
        binary = np.load(binary_path, allow_pickle=False)
        tags = [str(t) for t in np.load(d / "tags.npy", allow_pickle=False)]
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{root}: MTAT A-sota needs {Path(err.filename).name} next to binary.npy") from None
    if binary.ndim != 2 or binary.shape[1] != len(tags):
        raise ValueError(f"{binary_path} has shape {binary.shape}, expected (rows, {len(tags)}) for tags.npy")
    paths, splits, rows = [], [], []
    for split in SPLITS:
        f = d / f"{split}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"{root}: MTAT A-sota needs {f.name} next to binary.npy")
        for item in np.load(f, allow_pickle=False):
            idx, _, entry = str(item).partition("\t")
            if not idx.strip().isdigit() or not entry:
                raise ValueError(f"{f}: entry {str(item)!r} is not 'ROWIDX<TAB>path'")
            if int(idx) >= len(binary):
                raise ValueError(f"{f}: entry {str(item)!r} indexes row {idx} of binary.npy ({len(binary)} rows)")
            rows.append(int(idx))
            paths.append(_resolve(root, prefix, entry.strip(), f.name))
            splits.append(split)
    return paths, splits, (binary[rows] > 0).astype(np.uint8), tags


def _read_b(root: Path, prefix: str):
    ann = find_file(root, ["annotations_final.csv"])
    if ann is None:
        raise FileNotFoundError(f"{root}: MTAT split B needs annotations_final.csv")
    clip_ids, mp3s, tags, y = read_annotations(ann)
    # Top 50 by frequency; a stable sort keeps the csv's column order among equal counts.
    top = np.argsort(-y.sum(axis=0).astype(np.int64), kind="stable")[:50]
    paths, splits = [], []
    for mp3 in mp3s:
        folder = mp3.replace("\\", "/").split("/")[0]
        if folder not in _FOLDER_SPLIT:
            raise ValueError(f"{ann}: mp3_path {mp3!r} is not in one of the folders 0-9, a-f")
        paths.append(_resolve(root, prefix, mp3, ann.name))
        splits.append(_FOLDER_SPLIT[folder])
    return paths, splits, y[:, top], [tags[j] for j in top], clip_ids
