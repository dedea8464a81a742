"""The transfer set: deterministic from its seed, no audio in common with the corpus, and every
tag a fact of the rendered audio."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from workbench.config import TransferConfig
from workbench.data import transfer as T

SMALL = TransferConfig(n_train=6, n_valid=3, n_test=5, seconds=6.0)


@pytest.fixture(scope="module")
def renderer():
    return T.Renderer(16_000)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    return T.build_transfer(SMALL, root=tmp_path_factory.mktemp("transfer") / "t", progress=False, workers=1)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path, small_store):
    again = T.build_transfer(SMALL, root=tmp_path / "again", progress=False, workers=2)
    np.testing.assert_array_equal(np.asarray(again.samples), np.asarray(small_store.samples))
    np.testing.assert_array_equal(again.labels, small_store.labels)
    other = T.build_transfer(replace(SMALL, seed=SMALL.seed + 1), root=tmp_path / "other", progress=False, workers=1)
    assert not np.array_equal(np.asarray(other.samples)[:16_000], np.asarray(small_store.samples)[:16_000])
    assert T.transfer_root(SMALL) != T.transfer_root(replace(SMALL, seed=1))


def test_splits_sizes_and_labels_are_the_scores_tags(small_store):
    assert [len(small_store.indices(s)) for s in T.SPLITS] == [6, 3, 5]
    for i in range(len(small_store)):
        seed = int(small_store.tracks.seed.iloc[i])
        tags = T.compose(seed, SMALL.seconds, SMALL.solo_share)["tags"]
        assert [small_store.tag_names[k]
                for k in np.flatnonzero(small_store.labels[i])] == [t for t in T.TAGS if t in tags]


def _frame_hashes(samples: np.ndarray, frame: int = 8_000) -> set[bytes]:
    """Hashes of every non-silent half-second frame of int16 audio."""
    n = len(samples) // frame
    frames = np.asarray(samples[: n * frame]).reshape(n, frame)
    loud = np.abs(frames.astype(np.int32)).max(axis=1) > 64
    return {f.tobytes() for f in frames[loud]}


def test_no_audio_in_common_with_the_corpus(smoke_store, small_store):
    """Not one non-silent half second of the transfer set occurs in the corpus, and the corpus
    generator runs with the SoundFont renderer made unimportable (it never uses one)."""
    assert not _frame_hashes(smoke_store.samples) & _frame_hashes(small_store.samples)
    code = ("import sys; sys.modules['tinysoundfont'] = None\n"
            "from workbench.data.synth import generate_track\n"
            "audio, score, tags = generate_track(3, min_seconds=5, max_seconds=6)\n"
            "assert len(audio) > 0 and 'tinysoundfont' not in str(score)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seed", range(12))
def test_every_tag_is_a_fact_of_the_audio(renderer, seed):
    """The mix is the sum of its parts rendered alone (up to 2 % in L2: the synthesizer updates
    its envelopes in 64-sample blocks counted from each event, so a part alone is cut at other
    places than in the mix; measured 0.05-1.0 %), every tagged family's part carries a real share
    of the mix, and the tempo, texture and style tags follow the score."""
    score = T.compose(seed, 8.0)
    mix = renderer.render(score, seed=seed)
    stems = [renderer.render(score, parts=[i], seed=seed) for i in range(len(score["parts"]))]
    assert np.linalg.norm(sum(stems) - mix) <= 0.02 * np.linalg.norm(mix)
    rms = np.sqrt(np.mean(mix ** 2))
    assert rms > 1e-3
    for part, stem in zip(score["parts"], stems):
        assert np.sqrt(np.mean(stem ** 2)) > 0.05 * rms, f"{part['family']} is inaudible in seed {seed}"
    families = {p["family"] for p in score["parts"]}
    assert set(score["tags"]) & set(T.TAG_FAMILIES["instrument"]) == families
    lo, hi = next((lo, hi) for name, lo, hi in T.TEMPI if name == score["tempo"])
    assert lo <= score["tempo_bpm"] < hi and score["tempo"] in score["tags"]
    assert ("solo" in score["tags"]) == (len(score["parts"]) == 1) != ("ensemble" in score["tags"])
    assert score["style"] in score["tags"]


def test_a_missing_soundfont_package_is_named(monkeypatch):
    monkeypatch.setattr(T, "SOUNDFONT", ("no_such_package_here", "x.sf2"))
    with pytest.raises(FileNotFoundError, match="no_such_package_here"):
        T.soundfont_path()
