"""Real-dataset readers and ingestion, on tiny fixture trees in the exact published layouts.

The trees (tests/fixtures_datasets.py) are written with the real separators, quoting, line
endings and pickle protocol, and hold broken files on purpose. Every expectation here comes from
what the fixture wrote, not from the reader.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_datasets as fx  # noqa: E402

from workbench.config import DataConfig  # noqa: E402
from workbench.data import (  # noqa: E402
    decode,  # noqa: E402
    folder as folder_reader,  # noqa: E402
    gtzan,
    jamendo,
    mtat,
)
from workbench.data.ingest import ingest, read_report, read_table  # noqa: E402
from workbench.data.store import AudioStore  # noqa: E402
from workbench.data.table import UnsafePathError  # noqa: E402

SR = 16_000


@pytest.fixture(scope="module")
def mtat_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mtat")
    return root, fx.make_mtat(root)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """A private WORKBENCH_DATA per test, so stores of one test never serve another."""
    home = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA", str(home))
    return home


def _ingest(data_cfg: DataConfig, workers: int = 1) -> tuple[AudioStore, list[str]]:
    """Ingest and return the store with the warning messages it gave (fixture counts never match
    the published ones, so the count warnings are expected)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ingest(data_cfg, workers=workers, progress=False)
    return store, [str(w.message) for w in caught]


def _clip(info, path):
    return next(i for i, c in enumerate(info["clips"]) if c["path"] == path)


# --------------------------------------------------------------------------- MTAT readers

def test_annotations_csv_quoted_tab_crlf(mtat_tree):
    root, info = mtat_tree
    raw = (root / "annotations_final.csv").read_bytes()
    assert raw.count(b"\r\n") == len(info["clips"]) + 1 and raw.startswith(b'"clip_id"\t"guitar"')
    clip_ids, paths, tags, y = mtat.read_annotations(root / "annotations_final.csv")
    assert clip_ids == [c["clip_id"] for c in info["clips"]]
    assert paths == [c["path"] for c in info["clips"]]  # no stray quote or \r on the last field
    assert tags == info["tags"]
    np.testing.assert_array_equal(y, info["y"])


def test_mtat_split_b_tags_splits_and_alignment(mtat_tree):
    root, info = mtat_tree
    table = mtat.read(root, "B")
    assert table.name == "mtat-B" and table.task == "multi_label"
    assert table.tag_names == info["top50"]  # 50 largest column sums, not the csv order
    assert len(table.tag_names) == 50 and len(info["unused"]) == 10 and not set(table.tag_names) & set(info["unused"])
    cols = [info["tags"].index(t) for t in info["top50"]]
    for row, (path, split) in enumerate(zip(table.tracks["path"], table.tracks["split"])):
        c = _clip(info, path)
        assert split == info["clips"][c]["split_b"]
        assert split == {"c": "valid", **{f: "test" for f in "def"}}.get(path[0], "train")
        np.testing.assert_array_equal(table.labels[row], info["y"][c, cols])
    first = table.tracks.index[table.tracks["path"] == info["clips"][0]["path"]][0]
    assert table.labels[first].sum() == 0  # a clip with none of the top 50 keeps an all-zero row
    assert table.tracks["clip_id"].tolist() == [c["clip_id"] for c in info["clips"]]
    assert table.expected == {"train": 18_706, "valid": 1_825, "test": 5_329}


def test_mtat_split_a_pub_pickles(mtat_tree):
    root, info = mtat_tree
    table = mtat.read(root, "A")
    assert table.name == "mtat-A"
    assert table.tag_names[:3] == ["guitar", "classical", "slow"] and table.tag_names[-1] == "choral"
    assert len(table.tag_names) == 50 == len(set(table.tag_names))
    # one canonical name per tag across splits: MTAT's own spelling, as B and A-sota write it
    assert {"no vocals", "new age", "female voice", "male vocal"} <= set(table.tag_names)
    assert not any(c.isupper() for t in table.tag_names for c in t)
    for split in ("train", "valid", "test"):
        rows = table.tracks["split"] == split
        assert table.tracks.loc[rows, "path"].tolist() == info["a"][split]  # .npy -> .mp3, list order kept
        np.testing.assert_array_equal(table.labels[rows.to_numpy()], info["y_a"][split].astype(np.uint8))
    assert mtat.read(root).variant == "A"  # the pickles present: split A by default


def test_python2_protocol0_pickle_with_latin1(tmp_path):
    # What Python 2's cPickle.dump(list_of_str, f) wrote: 'S' (byte string) opcodes, protocol 0.
    py2 = b"(lp0\nS'c/caf\\xe9-0-29.npy'\np1\naS'f/x-30-59.npy'\np2\na."
    (tmp_path / "train_list_pub.cP").write_bytes(py2)
    assert mtat.load_list_pickle(tmp_path / "train_list_pub.cP") == ["c/caf\xe9-0-29.npy", "f/x-30-59.npy"]
    with open(tmp_path / "evil.cP", "wb") as f:  # a pickle that would call a function is refused
        pickle.dump([os.getcwd], f, protocol=0)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        mtat.load_list_pickle(tmp_path / "evil.cP")


def test_mtat_split_a_sota_arrays(mtat_tree):
    root, info = mtat_tree
    table = mtat.read(root, "A-sota")
    assert table.name == "mtat-A-sota" and table.tag_names == info["sota_tags"]
    for split in ("train", "valid", "test"):
        rows = (table.tracks["split"] == split).to_numpy()
        assert table.tracks.loc[rows, "path"].tolist() == info["a_sota"][split]
        np.testing.assert_array_equal(table.labels[rows], info["y_sota"][split])  # indexed by ROWIDX


def test_known_broken_mtat_ids(mtat_tree):
    root, _ = mtat_tree
    for variant in mtat.VARIANTS:
        known = mtat.read(root, variant).known_broken
        assert sorted(v.split()[-1] for v in known.values()) == ["35644", "55753", "57881"]
        assert all(v.startswith("known broken MTAT clip") for v in known.values())


# --------------------------------------------------------------------------- ingestion

def test_ingest_reports_broken_files_and_aligns_labels(mtat_tree, data_home, monkeypatch):
    root, info = mtat_tree
    store, messages = _ingest(DataConfig(dataset="mtat", root=str(root), variant="B"), workers=2)
    assert "mtat-B split 'train': 4 tracks kept (10 listed), expected 18706 (shared/DATASETS.md)" in messages
    assert store.root.parent == data_home / "stores" and store.root.name.startswith("mtat-B-")
    assert store.meta["dataset"] == "mtat-B" and store.meta["pretrain_splits"] == ["train"]
    assert store.meta["task"] == "multi_label"
    report = read_report(store).set_index("path")["reason"]
    expected_reason = {c["path"]: c["kind"] for c in info["clips"] if c["kind"] != "music" or c["seconds"] < 4}
    assert set(report.index) == set(expected_reason)
    for path, kind in expected_reason.items():
        word = {"empty": "empty", "corrupt": "corrupt", "silent": "silent", "missing": "missing",
                "music": "too short"}[kind]
        if path in mtat.KNOWN_BROKEN:
            assert report[path].startswith(f"known broken MTAT clip {mtat.KNOWN_BROKEN[path]}")
        assert word in report[path], (path, report[path])
    good = [c for c in info["clips"] if c["path"] not in expected_reason]
    assert sorted(store.tracks["source"]) == sorted(c["path"] for c in good)  # left out, not zero-filled
    table = mtat.read(root, "B")
    for i, tid in enumerate(store.tracks["track_id"]):
        row = table.tracks.index[table.tracks["track_id"] == tid][0]
        np.testing.assert_array_equal(store.labels[i], table.labels[row])
        assert store.tracks["split"][i] == table.tracks["split"][row]
        assert store.lengths[i] == int(4.5 * SR)
        assert np.abs(store.audio(i)).max() > 0.9  # real audio, peak-normalised
    # A finished store is reused without decoding anything.
    monkeypatch.setattr(decode, "load_audio", lambda *a, **kw: pytest.fail("decoded a reused store"))
    again, _ = _ingest(DataConfig(dataset="mtat", root=str(root), variant="B"), workers=1)
    assert again.root == store.root


def test_resume_after_interrupted_ingestion(mtat_tree, tmp_path, monkeypatch):
    root, _ = mtat_tree
    cfg = DataConfig(dataset="mtat", root=str(root), variant="A")
    real_load, calls = decode.load_audio, []

    def counting_load(path, *a, **kw):
        calls.append(path)
        return real_load(path, *a, **kw)

    def dying_load(path, *a, **kw):  # a kill (Ctrl-C) in the middle of the 10th decoding
        if len(calls) == 9:
            raise KeyboardInterrupt
        return counting_load(path, *a, **kw)

    monkeypatch.setattr(decode, "load_audio", counting_load)
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "whole"))
    whole, _ = _ingest(cfg)
    n_decoded_whole = len(calls)

    calls.clear()
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "cut"))
    monkeypatch.setattr(decode, "load_audio", dying_load)
    with pytest.raises(KeyboardInterrupt):
        ingest(cfg, workers=1, progress=False)
    partial = list((tmp_path / "cut" / "stores").glob("*.partial"))
    assert len(partial) == 1 and not (tmp_path / "cut" / "stores" / whole.root.name).exists()
    kept_before = [p for p in calls if Path(p).relative_to(root).as_posix() in set(whole.tracks["source"])]
    assert len(kept_before) >= 2

    calls.clear()
    monkeypatch.setattr(decode, "load_audio", counting_load)
    resumed, _ = _ingest(cfg)
    assert resumed.root.name == whole.root.name
    assert len(calls) == n_decoded_whole - len(kept_before)  # tracks kept before the kill are not decoded again
    pd.testing.assert_frame_equal(resumed.tracks, whole.tracks)
    np.testing.assert_array_equal(resumed.labels, whole.labels)
    assert (resumed.root / "audio.i16").read_bytes() == (whole.root / "audio.i16").read_bytes()
    pd.testing.assert_frame_equal(read_report(resumed), read_report(whole))


# --------------------------------------------------------------------------- path safety

def test_path_traversal_refused(tmp_path):
    root = tmp_path / "mtat"
    fx.make_mtat(root)
    for bad in ("../../etc/passwd.npy", "/etc/passwd.npy", "c/../../outside.npy"):
        with open(root / "MTAT_split" / "valid_list_pub.cP", "wb") as f:
            pickle.dump(["c/fine-0-29.npy", bad], f, protocol=0)
        with pytest.raises(UnsafePathError, match=repr(bad[:-4] + ".mp3").replace(".", r"\.")):
            mtat.read(root, "A")
    # A symlink inside the root that leads out of it.
    outside = tmp_path / "elsewhere"
    fx.write_audio(outside / "x.wav", 4.5)
    (root / "c" / "link").symlink_to(outside, target_is_directory=True)
    with open(root / "MTAT_split" / "valid_list_pub.cP", "wb") as f:
        pickle.dump(["c/link/x.npy", "c/fine-0-29.npy"], f, protocol=0)
    with pytest.raises(UnsafePathError, match="outside the dataset root"):
        mtat.read(root, "A")
    # The same in a user folder and in a user CSV.
    pool = tmp_path / "pool"
    fx.make_folder(pool)
    (pool / "escape.wav").symlink_to(outside / "x.wav")
    with pytest.raises(UnsafePathError, match="escape.wav"):
        folder_reader.read(pool)
    labeled = tmp_path / "labeled"
    fx.make_csv_dataset(labeled)
    (labeled / "labels.csv").write_text("path,tags\nclips/c0.wav,rock\n../pool/album0/song0.mp3,jazz\n")
    with pytest.raises(UnsafePathError, match=r"\.\./pool/album0/song0\.mp3"):
        folder_reader.read_csv_dataset(labeled)


# --------------------------------------------------------------------------- MTG-Jamendo, GTZAN

@pytest.mark.parametrize("low", [False, True])
def test_jamendo_tsv_layouts_and_cap(tmp_path, data_home, low):
    root = tmp_path / "jamendo"
    written = fx.make_jamendo(root, low=low)
    raw = (root / "data/splits/split-0/autotagging_top50tags-train.tsv").read_bytes()
    assert b"\r\n" in raw and raw.startswith(b"TRACK_ID\tARTIST_ID")
    table = jamendo.read(root, "top50")
    assert table.name == "jamendo-top50"
    assert all(not t.endswith("\r") and "---" in t for t in table.tag_names)
    assert set(table.tag_families) == {"genre", "instrument", "mood/theme"}
    for split_file, split in (("train", "train"), ("validation", "valid"), ("test", "test")):
        rows = table.tracks[table.tracks["split"] == split]
        assert rows["track_id"].tolist() == [tid for tid, _ in written[split_file]]
        for (tid, tags), i in zip(written[split_file], rows.index):
            assert {table.tag_names[j] for j in np.flatnonzero(table.labels[i])} == set(tags)
            assert table.tracks["path"][i].endswith(".low.mp3" if low else ".mp3")
            assert table.tracks["path"][i].split("/")[0] == f"{int(tid[6:]) % 100:02d}"
    store, messages = _ingest(DataConfig(dataset="jamendo", root=str(root), variant="top50", max_seconds=5.0))
    assert any("expected 32136" in m for m in messages)
    assert store.lengths.max() == 5 * SR and store.lengths.min() == int(4.5 * SR)  # the cap holds
    assert read_report(store)["reason"].str.startswith("missing").tolist() == [True]
    assert store.tag_families["mood/theme"] == ["mood/theme---happy", "mood/theme---sad"]
    with pytest.raises(FileNotFoundError, match="autotagging_genre-train.tsv"):
        jamendo.read(root, "genre")


def test_gtzan_single_label(tmp_path, data_home):
    root = tmp_path / "gtzan"
    lists = fx.make_gtzan(root)
    table = gtzan.read(root)
    assert table.task == "single_label" and len(table.tag_names) == 10
    assert (table.labels.sum(1) == 1).all()
    for split, entries in lists.items():
        rows = table.tracks[table.tracks["split"] == split]
        assert [p.removeprefix("genres/") for p in rows["path"]] == entries
        assert [table.tag_names[j] for j in table.labels[rows.index].argmax(1)] == [e.split("/")[0] for e in entries]
    store, messages = _ingest(DataConfig(dataset="gtzan", root=str(root)))
    assert any("expected 443" in m for m in messages)
    assert store.meta["task"] == "single_label" and store.meta["dataset"] == "gtzan-filtered"
    assert (store.lengths == int(4.5 * SR)).all()  # 22.05 kHz WAV resampled to 16 kHz


# --------------------------------------------------------------------------- the user's own audio

def test_folder_pool_and_csv_dataset(tmp_path, data_home):
    pool = tmp_path / "pool"
    rels = fx.make_folder(pool, n=3)
    store, _ = _ingest(DataConfig(dataset="folder", root=str(pool)))
    assert sorted(store.tracks["source"]) == rels and set(store.tracks["split"]) == {"pool"}
    assert store.meta["pretrain_splits"] == ["pool"] and store.labels.shape == (3, 0)

    labeled = tmp_path / "labeled"
    rows = fx.make_csv_dataset(labeled, with_split=True)
    table = read_table(DataConfig(dataset="csv", root=str(labeled)))
    assert table.tag_names == ["ambient", "guitar", "jazz", "piano", "rock"]
    assert table.tracks["split"].tolist() == [r["split"] for r in rows]
    for i, r in enumerate(rows):  # both ';' and quoted ',' separators
        assert [table.tag_names[j] for j in np.flatnonzero(table.labels[i])] == sorted(r["tags"])
    store, _ = _ingest(DataConfig(dataset="csv", root=str(labeled)))
    assert store.meta["dataset"] == "csv-labels" and store.meta["pretrain_splits"] == ["train"]

    fx.make_csv_dataset(labeled, with_split=False)
    a = folder_reader.read_csv_dataset(labeled)
    b = folder_reader.read_csv_dataset(labeled)
    assert a.tracks["split"].tolist() == b.tracks["split"].tolist()  # seeded
    assert a.tracks["split"].value_counts().to_dict() == {"train": 4, "valid": 1, "test": 1}


def test_unknown_dataset_and_variant(tmp_path):
    with pytest.raises(ValueError, match="mtat, jamendo, gtzan, folder, csv"):
        read_table(DataConfig(dataset="mnist", root=str(tmp_path)))
    with pytest.raises(ValueError, match="A, A-sota, B"):
        mtat.read(tmp_path, "C")
    with pytest.raises(ValueError, match="top50, genre, instrument, moodtheme, all"):
        jamendo.read(tmp_path, "moods")


# --------------------------------------------------------------------------- end to end

def test_end_to_end_smoke_ingest_pretrain_probe(tmp_path, smoke_cfg):
    """Ingest an MTAT split-B fixture, pretrain two steps, probe: the whole path on real layouts."""
    train = pytest.importorskip("workbench.train")
    evaluate = pytest.importorskip("workbench.evaluate")
    root = tmp_path / "mtat"
    fx.make_mtat(root, seconds=12.5)  # two 4 s views 4 s apart need 12 s
    cfg = dataclasses.replace(
        smoke_cfg, data=DataConfig(dataset="mtat", root=str(root), variant="B"),
        train=dataclasses.replace(smoke_cfg.train, steps=2),
        eval=dataclasses.replace(smoke_cfg.eval, baselines=("random",), fractions=(1.0,), bootstrap_resamples=20))
    store, _ = _ingest(cfg.data, workers=2)
    assert len(store) == 9
    run = train.pretrain(cfg, progress=False)
    assert (run / "DONE").exists()
    out = evaluate.run_evaluation(cfg, [run], out_dir=tmp_path / "report", progress=False)
    results = pd.read_csv(out / "results.csv")
    assert set(results["dataset"]) == {"mtat"} and set(results["variant"]) == {"B"}
    assert np.isfinite(results["point"]).all()
    assert json.loads((store.root / "meta.json").read_text())["dataset"] == "mtat-B"
    assert isinstance(AudioStore.open(store.root), AudioStore)


def test_mtat_canonical_tag_names():
    from workbench.data.mtat import canonical_tag

    assert [canonical_tag(t) for t in ("noVocals", "newAge", "femaleVoice", "no vocals", "guitar")] == \
        ["no vocals", "new age", "female voice", "no vocals", "guitar"]


def test_pretraining_reads_the_corpus_splits_the_config_names(smoke_cfg, smoke_store, tmp_path):
    """corpus.pretrain_splits: the pool by default, pool and train when asked (audio only), the
    corpus itself unchanged (same folder); a real dataset's store keeps its own splits."""
    from dataclasses import replace

    from workbench.data.corpus import corpus_root
    from workbench.data.datasets import pretrain_indices
    from workbench.data.store import StoreWriter

    both = replace(smoke_cfg, corpus=replace(smoke_cfg.corpus, pretrain_splits=("pool", "train")))
    assert corpus_root(both.corpus) == corpus_root(smoke_cfg.corpus)
    np.testing.assert_array_equal(pretrain_indices(smoke_store, smoke_cfg), smoke_store.indices("pool"))
    np.testing.assert_array_equal(pretrain_indices(smoke_store, both), smoke_store.indices(["pool", "train"]))
    w = StoreWriter(tmp_path / "other", 1_000, ["x"], meta={"dataset": "folder", "pretrain_splits": ["train"]})
    for i, split in enumerate(["train", "train", "valid"]):
        w.add(f"t{i}", np.zeros(100), split, [1])
    other = w.commit()
    np.testing.assert_array_equal(pretrain_indices(other, both), other.indices("train"))
