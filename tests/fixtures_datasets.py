"""Tiny fixture trees in the exact layouts of the real datasets (shared/DATASETS.md).

Each builder writes short generated audio (MP3 via soundfile, or WAV) and the metadata files
with the real separators, quoting and line endings, and returns what a correct reader must find,
so tests compare the reader against these independent expectations. Broken files are made on
purpose: empty (0 bytes), corrupt bytes, too short (< 4 s), silent, and listed-but-missing.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
MTAT_BROKEN = {  # the three known broken clips, as in every copy of MTAT
    "35644": "6/norine_braun-now_and_zen-08-gently-117-146.mp3",
    "55753": "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3",
    "57881":
        "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin-88-117.mp3",
}


def write_audio(path: Path, seconds: float = 4.5, seed: int = 0, fmt: str | None = None, sr: int = SR,
                kind: str = "music") -> Path:
    """A short clip: tones plus noise ("music"), all zeros ("silent"), or special broken files:
    "empty" (0 bytes) and "corrupt" (random bytes under the audio name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "empty":
        path.write_bytes(b"")
        return path
    if kind == "corrupt":
        path.write_bytes(b"ID3\x03\x00" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
        return path
    n = int(seconds * sr)
    if kind == "silent":
        x = np.zeros(n, np.float32)
    else:
        t = np.arange(n) / sr
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        x = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        x = (x + 0.05 * rng.standard_normal(n)).astype(np.float32)
    fmt = fmt or ("MP3" if path.suffix == ".mp3" else "WAV")
    sf.write(str(path), x, sr, format=fmt)
    return path


def _mtat_clips(seconds: float) -> list[dict]:
    """Clips of the MTAT fixture: (clip_id, folder/name, kind, seconds)."""
    good = [("0", "artist_a-album_a-01-song_a-0-29"), ("3", "artist_b-album_b-02-song_b-30-59"),
            ("b", "artist_c-album_c-03-song_c-59-88"), ("c", "artist_d-album_d-04-song_d-0-29"),
            ("c", "artist_e-album_e-05-song_e-30-59"), ("d", "artist_f-album_f-06-song_f-0-29"),
            ("f", "artist_g-album_g-07-song_g-88-117"), ("1", "artist_h-album_h-08-song_h-0-29"),
            ("e", "artist_i-album_i-09-song_i-0-29")]
    clips = [dict(clip_id=str(100 + 7 * i), path=f"{d}/{n}.mp3", kind="music", seconds=seconds)
             for i, (d, n) in enumerate(good)]
    clips += [dict(clip_id="35644", path=MTAT_BROKEN["35644"], kind="empty", seconds=0),
              dict(clip_id="55753", path=MTAT_BROKEN["55753"], kind="corrupt", seconds=0),
              dict(clip_id="57881", path=MTAT_BROKEN["57881"], kind="corrupt", seconds=0),
              dict(clip_id="200", path="2/short_artist-album-01-short-0-29.mp3", kind="music", seconds=2.0),
              dict(clip_id="201", path="4/quiet_artist-album-01-silence-0-29.mp3", kind="silent", seconds=5.0),
              dict(clip_id="202", path="a/gone_artist-album-01-gone-0-29.mp3", kind="missing", seconds=0),
              dict(clip_id="203", path="d/empty_artist-album-01-empty-0-29.mp3", kind="empty", seconds=0)]
    return clips


def make_mtat(root: Path, seconds: float = 4.5, n_tags: int = 60, seed: int = 0) -> dict:
    """An MTAT tree with all three metadata forms (split A pickles, A-sota npy, annotations csv).

    Returns ``clips`` (list of dicts: clip_id, path, kind, split_b), ``tags`` (csv tag names),
    ``y`` (clips x n_tags csv labels), ``top50`` (expected split-B tag order), ``a`` and
    ``a_sota`` ({split: [paths]}) and their label matrices ``y_a`` / ``y_sota`` ({split: (N, 50)}).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    clips = _mtat_clips(seconds)
    for i, c in enumerate(clips):
        if c["kind"] != "missing":
            write_audio(root / c["path"], c["seconds"], seed=seed + i, kind=c["kind"])
        c["split_b"] = {**{ch: "train" for ch in "0123456789ab"}, "c": "valid"}.get(c["path"][0], "test")
    # annotations_final.csv: distinct column sums so the top-50 order is unambiguous, with ten tags
    # that no clip has (they fall out of the top 50); one clip with none of the top 50.
    tags = [f"tag{j:03d}" for j in range(n_tags)]
    tags[0], tags[1] = "guitar", "classical"
    y = np.zeros((len(clips), n_tags), np.uint8)
    for j in range(50):
        y[1 + rng.choice(len(clips) - 1, size=1 + j % (len(clips) - 1), replace=False), (j * 7) % n_tags] = 1
    y[0] = 0  # the first (good) clip carries no tag at all: it must keep an all-zero row
    header = ["clip_id", *tags, "mp3_path"]
    lines = ["\t".join(f'"{h}"' for h in header)]
    for c, row in zip(clips, y):
        lines.append("\t".join(f'"{v}"' for v in [c["clip_id"], *map(str, row), c["path"]]))
    (root / "annotations_final.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    sums = y.sum(axis=0).astype(int)
    top50 = [tags[j] for j in sorted(range(n_tags), key=lambda j: (-sums[j], j))[:50]]
    unused = [tags[j] for j in range(n_tags) if sums[j] == 0]  # must never make the top 50

    # Split A (jongpillee/music_dataset_split): protocol-0 pickles of '.npy' names + y_*_pub.npy.
    split_dir = root / "MTAT_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    a = {"train": [c["path"] for c in clips if c["split_b"] == "train"][::-1],  # A's order differs from B's
         "valid": [c["path"] for c in clips if c["split_b"] == "valid"],
         "test": [c["path"] for c in clips if c["split_b"] == "test"]}
    y_a = {}
    for split, paths in a.items():
        with open(split_dir / f"{split}_list_pub.cP", "wb") as f:
            pickle.dump([p[:-4] + ".npy" for p in paths], f, protocol=0)
        y_a[split] = rng.integers(0, 2, size=(len(paths), 50)).astype(np.float64)  # as distributed: floats
        np.save(split_dir / f"y_{split}_pub.npy", y_a[split])

    # A-sota (minzwon/sota-music-tagging-models split/mtat): "ROWIDX\tpath" + binary.npy + tags.npy.
    sota_dir = root / "split" / "mtat"
    sota_dir.mkdir(parents=True, exist_ok=True)
    rows = rng.permutation(len(clips) + 5)[:len(clips)]  # row indices into binary.npy, not contiguous
    binary = rng.integers(0, 2, size=(len(clips) + 5, 50)).astype(np.int64)
    sota_tags = np.array([f"s{j}" for j in range(50)])
    np.save(sota_dir / "binary.npy", binary)
    np.save(sota_dir / "tags.npy", sota_tags)
    a_sota, y_sota = {}, {}
    for split in ("train", "valid", "test"):
        idx = [i for i, c in enumerate(clips) if c["split_b"] == split]
        np.save(sota_dir / f"{split}.npy", np.array([f"{rows[i]}\t{clips[i]['path']}" for i in idx]))
        a_sota[split] = [clips[i]["path"] for i in idx]
        y_sota[split] = binary[rows[idx]]
    return dict(clips=clips, tags=tags, y=y, top50=top50, unused=unused, a=a, y_a=y_a, a_sota=a_sota, y_sota=y_sota,
                sota_tags=list(sota_tags))


JAMENDO_TAGS = ["genre---rock", "genre---pop", "genre---electronic", "instrument---guitar",
                "instrument---piano", "mood/theme---happy", "mood/theme---sad"]


def make_jamendo(root: Path, low: bool = False, seconds: float = 4.5, subset: str = "top50tags") -> dict:
    """MTG-Jamendo split-0 TSVs (TAB, CRLF, category---tag columns) and NN/ID[.low].mp3 audio.

    Returns {split: [(track_id, tags)]} as written; one track per split has its file missing."""
    root = Path(root)
    tsv_dir = root / "data" / "splits" / "split-0"
    tsv_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out, n = {}, 0
    for split, count in (("train", 4), ("validation", 2), ("test", 2)):
        lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
        out[split] = []
        for k in range(count):
            num = 241 + 100 * n + n  # ids spread over folders NN = id % 100
            tid = f"track_{num:07d}"
            rel = f"{num % 100:02d}/{num}.mp3"
            tags = list(rng.choice(JAMENDO_TAGS, size=1 + k % 3, replace=False))
            lines.append("\t".join([tid, f"artist_{n:06d}", f"album_{n:06d}", rel, f"{200.0 + n:.1f}", *tags]))
            out[split].append((tid, tags))
            if k != 1 or split != "train":  # train's second track is missing on disk
                audio_rel = rel[:-4] + (".low.mp3" if low else ".mp3")
                write_audio(root / audio_rel, seconds + n % 3, seed=100 + n)
            n += 1
        name = f"autotagging_{subset}-{split}.tsv" if subset != "all" else f"autotagging-{split}.tsv"
        (tsv_dir / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return out


def make_gtzan(root: Path, seconds: float = 4.5) -> dict:
    """GTZAN fault-filtered lists and genres/<genre>/<genre>.000NN.wav; returns {split: [entries]}."""
    root = Path(root)
    lists = {"train": [], "valid": [], "test": []}
    for g_i, genre in enumerate(GENRES[:4]):
        for k, split in enumerate(("train", "train", "valid", "test")):
            entry = f"{genre}/{genre}.{k + 10 * g_i:05d}.wav"
            lists[split].append(entry)
            write_audio(root / "genres" / entry, seconds, seed=g_i * 10 + k, sr=22_050)
    for split, entries in lists.items():
        (root / f"{split}_filtered.txt").write_text("\n".join(entries) + "\n")
    return lists


def make_folder(root: Path, n: int = 3, seconds: float = 4.5) -> list[str]:
    """A folder of mixed WAV / MP3 files in sub-folders; returns the relative paths, sorted."""
    root = Path(root)
    rels = []
    for i in range(n):
        rel = f"album{i % 2}/song{i}." + ("wav" if i % 2 else "mp3")
        write_audio(root / rel, seconds, seed=300 + i)
        rels.append(rel)
    (root / "notes.txt").write_text("not audio\n")
    return sorted(rels)


def make_csv_dataset(root: Path, with_split: bool = True, seconds: float = 4.5) -> list[dict]:
    """A folder plus labels.csv (path, tags separated by ';' or ',', optional split)."""
    root = Path(root)
    rows = []
    tag_sets = [["rock", "guitar"], ["jazz"], ["rock"], ["ambient", "piano"], ["jazz", "piano"], ["rock"]]
    for i, tags in enumerate(tag_sets):
        rel = f"clips/c{i}.wav"
        write_audio(root / rel, seconds, seed=400 + i)
        rows.append(dict(path=rel, tags=tags, split=("train", "train", "train", "valid", "test", "test")[i]))
    head = "path,tags" + (",split" if with_split else "")
    lines = [head]
    for i, r in enumerate(rows):
        field = ";".join(r["tags"]) if i % 2 == 0 else '"' + ",".join(r["tags"]) + '"'
        lines.append(f"{r['path']},{field}" + (f",{r['split']}" if with_split else ""))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return rows


def make_jamendo_partial(root: Path, n_missing: int, n_present: int, audio_dir: str = "audio",
                         audio: bool = False) -> list[str]:
    """A partial MTG-Jamendo copy: the TSVs list ``n_missing + n_present`` tracks (train, then one
    valid and one test at the end) and only the LAST ``n_present`` files exist, under
    ``audio_dir``: 0-byte placeholders (reader tests) or real 4.5 s clips (``audio=True``).
    Returns the relative paths as listed (PATH column)."""
    root = Path(root)
    tsv_dir = root / "data" / "splits" / "split-0"
    tsv_dir.mkdir(parents=True, exist_ok=True)
    total = n_missing + n_present
    lines = {s: ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"] for s in ("train", "validation", "test")}
    rels = []
    for k in range(total):
        split = "test" if k == total - 1 else "validation" if k == total - 2 else "train"
        num = 1000 + k
        rel = f"{num % 100:02d}/{num}.mp3"
        lines[split].append("\t".join([f"track_{num:07d}", "artist_000001", "album_000001", rel, "200.0",
                                       JAMENDO_TAGS[k % len(JAMENDO_TAGS)]]))
        rels.append(rel)
        if k >= n_missing:
            path = root / audio_dir / rel
            if audio:
                write_audio(path, 4.5, seed=k)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    for split, rows in lines.items():
        (tsv_dir / f"autotagging_top50tags-{split}.tsv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    return rels
