"""The audio store: round trip, vectorised segments, atomic commit, resume, clear errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from workbench.data.store import AudioStore, StoreError, StoreWriter

SR = 16_000
TAGS = ["rock", "jazz", "piano"]
FAMILIES = {"style": ["rock", "jazz"], "instrument": ["piano"]}


def _tracks(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        audio = (rng.uniform(0.1, 0.9) * rng.uniform(-1, 1, size=int(rng.integers(800, 3000)))).astype(np.float32)
        split = ["pool", "train", "valid", "test"][i % 4]
        out.append((f"trk{i:03d}", audio, split, rng.integers(0, 2, size=len(TAGS))))
    return out


def _write(root, tracks, resume=False):
    w = StoreWriter(root, SR, TAGS, FAMILIES, meta={"dataset": "unit"}, resume=resume)
    for tid, audio, split, labels in tracks:
        if tid not in w.done_ids():
            w.add(tid, audio, split, labels, source=f"{tid}.wav", artist=f"a{tid[-1]}")
    return w


def test_round_trip(tmp_path):
    tracks = _tracks()
    store = _write(tmp_path / "s", tracks).commit()
    assert len(store) == len(tracks) and store.sample_rate == SR
    assert store.tag_names == TAGS and store.tag_families == FAMILIES
    assert store.meta["dataset"] == "unit" and store.meta["n_tracks"] == len(tracks)
    assert store.meta["pretrain_splits"] == ["pool"]
    assert list(store.tracks.columns[:5]) == ["track_id", "split", "offset", "length", "source"]
    assert store.tracks["track_id"].tolist() == [t[0] for t in tracks]
    assert store.tracks["artist"].iloc[1] == "a1"
    for i, (_, audio, _, labels) in enumerate(tracks):
        x = store.audio(i)
        assert x.dtype == np.float32 and x.shape == audio.shape
        # Peak-normalised on write, then int16: equal to audio / peak within half an LSB.
        np.testing.assert_allclose(x, audio / np.abs(audio).max(), atol=0.5 / 32767 + 1e-7)
        assert np.abs(x).max() == pytest.approx(1.0)
        np.testing.assert_array_equal(store.labels[i], labels)
    assert store.labels.dtype == np.uint8
    np.testing.assert_array_equal(store.indices("train"), [1, 5])
    np.testing.assert_array_equal(store.indices(["pool", "valid"]), [0, 2, 4])
    idx, lab = store.split_labels("test")
    np.testing.assert_array_equal(idx, [3])
    np.testing.assert_array_equal(lab, store.labels[[3]])
    assert "pool 2" in repr(store) and "6 tracks" in repr(store)
    assert not (tmp_path / "s.partial").exists()
    clone = pickle.loads(pickle.dumps(store))  # by path: small, and the memmap is reopened
    assert len(pickle.dumps(store)) < 1_000 and isinstance(clone.samples, np.memmap)
    np.testing.assert_array_equal(clone.audio(2), store.audio(2))


def test_segments_vectorised_gather(tmp_path):
    store = _write(tmp_path / "s", _tracks(8)).commit()
    rng = np.random.default_rng(1)
    length = 500
    idx = rng.integers(0, len(store), size=20)
    starts = np.array([rng.integers(0, store.lengths[i] - length + 1) for i in idx])
    seg = store.segments(idx, starts, length)
    assert seg.shape == (20, length) and seg.dtype == np.float32
    for row, i, s in zip(seg, idx, starts):
        np.testing.assert_array_equal(row, store.audio(i)[s:s + length])
    with pytest.raises(ValueError, match="outside track"):
        store.segments(np.array([0]), np.array([store.lengths[0] - 10]), 20)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        store.segments(np.array([[0]]), np.array([[0]]), 20)


def test_silent_track_is_kept_as_zeros(tmp_path):
    w = StoreWriter(tmp_path / "s", SR, TAGS)
    w.add("quiet", np.zeros(100, np.float32), "pool", None)
    store = w.commit()
    np.testing.assert_array_equal(store.audio(0), 0)
    np.testing.assert_array_equal(store.labels[0], 0)


def test_interrupted_write_is_not_opened_and_resume_gives_same_bytes(tmp_path):
    tracks = _tracks(8)
    ref = _write(tmp_path / "ref", tracks).commit()

    root = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        with _write(root, tracks[:5]) as w:
            raise KeyboardInterrupt  # the context manager leaves the partial folder
    assert not root.exists() and (root.parent / "s.partial").is_dir()
    with pytest.raises(FileNotFoundError, match="resume=True"):
        AudioStore.open(root)
    # Simulate a crash in the middle of a track: its samples hit the disk, its journal line did not.
    with open(root.parent / "s.partial" / "audio.i16", "ab") as f:
        f.write(b"\x01\x02" * 777)
    with open(root.parent / "s.partial" / "journal.jsonl", "a") as f:
        f.write('{"track_id": "trk005", "spl')

    w = StoreWriter(root, SR, TAGS, FAMILIES, meta={"dataset": "unit"}, resume=True)
    assert w.done_ids() == {t[0] for t in tracks[:5]}
    added = []
    for tid, audio, split, labels in tracks:
        if tid not in w.done_ids():
            w.add(tid, audio, split, labels, source=f"{tid}.wav", artist=f"a{tid[-1]}")
            added.append(tid)
    assert added == [t[0] for t in tracks[5:]]
    store = w.commit()
    for name in ("audio.i16", "tracks.csv", "labels.npy", "tags.json"):
        assert (root / name).read_bytes() == (ref.root / name).read_bytes(), name
    assert len(store) == len(ref)


def test_without_resume_a_partial_folder_is_discarded(tmp_path):
    tracks = _tracks(4)
    _write(tmp_path / "s", tracks[:2]).close()
    w = _write(tmp_path / "s", tracks[2:])
    assert w.done_ids() == {t[0] for t in tracks[2:]}
    assert len(w.commit()) == 2


def test_resume_with_other_tags_raises(tmp_path):
    _write(tmp_path / "s", _tracks(2)).close()
    with pytest.raises(StoreError, match="cannot resume"):
        StoreWriter(tmp_path / "s", SR, TAGS[:2], resume=True)


def test_incomplete_and_inconsistent_stores_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        AudioStore.open(tmp_path / "nothing")
    root = _write(tmp_path / "s", _tracks(3)).commit().root
    (root / "COMPLETE").unlink()
    with pytest.raises(StoreError, match="incomplete"):
        AudioStore.open(root)
    (root / "COMPLETE").write_text("ok\n")
    np.save(root / "labels.npy", np.zeros((3, 2), np.uint8))
    with pytest.raises(StoreError, match=r"labels.npy has shape \(3, 2\), expected \(3, 3\)"):
        AudioStore.open(root)
    with pytest.raises(StoreError, match="already exists"):
        StoreWriter(root, SR, TAGS)


def test_add_rejects_bad_tracks(tmp_path):
    w = StoreWriter(tmp_path / "s", SR, TAGS)
    w.add("a", np.ones(10, np.float32), "pool", [0, 1, 0])
    with pytest.raises(ValueError, match="duplicate track id 'a'"):
        w.add("a", np.ones(10, np.float32), "pool", [0, 1, 0])
    with pytest.raises(ValueError, match="no samples"):
        w.add("b", np.zeros(0, np.float32), "pool", [0, 1, 0])
    with pytest.raises(ValueError, match="non-finite"):
        w.add("b", np.array([0.0, np.nan], np.float32), "pool", [0, 1, 0])
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        w.add("b", np.ones(10, np.float32), "pool", [0, 1])
    with pytest.raises(ValueError, match=r"mono \(S,\)"):
        w.add("b", np.ones((2, 10), np.float32), "pool", [0, 1, 0])
    with pytest.raises(ValueError, match="unknown tags"):
        StoreWriter(tmp_path / "t", SR, TAGS, {"style": ["metal"]})
    assert len(w.commit()) == 1
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["n_samples"] == 10
