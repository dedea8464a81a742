"""The embedded corpus: determinism, tags against the score, splits, caching and atomic builds."""

from __future__ import annotations

import os

import numpy as np
import pytest

from workbench.config import CorpusConfig
from workbench.data import corpus, synth
from workbench.data.corpus import build_corpus, clean_labels, load_scores
from workbench.data.store import AudioStore
from workbench.data.synth import INSTRUMENT_TAGS, STYLES, TAG_FAMILIES, TAGS, generate_track

TINY = CorpusConfig(seed=3, n_pool=2, n_train=3, n_valid=2, n_test=2, label_dropout=0.3)
SR = 16_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> AudioStore:
    return build_corpus(TINY, root=tmp_path_factory.mktemp("corpus") / "tiny", progress=False, workers=1)


def test_same_seed_same_bytes_other_seed_other_audio():
    a1, s1, t1 = generate_track(11)
    a2, s2, t2 = generate_track(11)
    assert a1.tobytes() == a2.tobytes() and s1 == s2 and t1 == t2
    b, _, _ = generate_track(12)
    n = min(len(a1), len(b))
    assert not np.allclose(a1[:n], b[:n])


def test_audio_is_finite_mono_and_peak_normalised():
    audio, _, _ = generate_track(5, style="ambient")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all() and 0.99 <= np.abs(audio).max() <= 1.0


def test_tag_vocabulary_and_families():
    assert len(TAGS) >= 30 and len(set(TAGS)) == len(TAGS)
    assert len(STYLES) >= 8 and TAG_FAMILIES["style"] == list(STYLES)
    assert sorted(t for f in TAG_FAMILIES.values() for t in f) == sorted(TAGS)
    assert len(synth.si.INSTRUMENTS) + 1 >= 10  # pitched timbres + the drum kit


@pytest.mark.parametrize("style", list(STYLES))
def test_tags_agree_with_the_score(style):
    for seed in range(3):
        _, score, tags = generate_track(100 + seed, style=style, seconds=20.0)
        events = score["events"]
        played = {e[3] for e in events}
        assert {t for t in tags if t in INSTRUMENT_TAGS} == played
        if "drums" not in tags:
            assert not any(e[3] == "drums" for e in events)
        assert set(score["instruments"]) == played, "every drawn instrument plays"
        assert [t for t in tags if t in STYLES] == [style]
        assert ("vocal" in tags) == ("voice" in played) == ("instrumental" not in tags)
        assert ("solo" in tags) == (len(played) == 1) == ("ensemble" not in tags)
        tempo = score["tempo"]
        expected = "slow" if tempo < 90 else "medium" if tempo < 125 else "fast"
        assert [t for t in tags if t in TAG_FAMILIES["tempo"]] == [expected]
        assert not ({"loud", "quiet"} <= set(tags))
        if "happy" in tags:
            assert score["mode"] == "major"
        if "sad" in tags:
            assert score["mode"] == "minor"
        onsets = np.array([e[0] for e in events])
        assert onsets.min() >= 0 and onsets.max() < score["seconds"]


def test_sections_keep_identity_and_vary_notes():
    """Every instrument sounds in every 4 s window; windows hold different notes."""
    for seed in range(8):
        _, score, _ = generate_track(200 + seed, seconds=24.0)
        ev = score["events"]
        windows = [(t, t + 4.0) for t in np.arange(0.0, score["seconds"] - 4.0, 4.0)]
        for inst in score["instruments"]:
            for lo, hi in windows:
                assert any(e[3] == inst and e[0] < hi and e[0] + e[1] + 0.3 > lo for e in ev), \
                    f"seed {200 + seed}: {inst} silent in [{lo}, {hi}) ({score['style']})"
        pitched = [(round(e[0] % 100, 1), e[2]) for e in ev if e[3] != "drums"]
        first = sorted(p for o, p in pitched if o < 8.0)
        later = sorted(p for o, p in pitched if 8.0 <= o < 16.0)
        assert first != later


def test_corpus_splits_lengths_and_meta(tiny):
    sizes = {"pool": TINY.n_pool, "train": TINY.n_train, "valid": TINY.n_valid, "test": TINY.n_test}
    seen = set()
    for split, n in sizes.items():
        idx = tiny.indices(split)
        assert len(idx) == n
        assert not seen & set(idx)
        seen |= set(idx)
    assert len(seen) == len(tiny) == sum(sizes.values())
    assert tiny.tracks["track_id"].is_unique
    assert tiny.meta["pretrain_splits"] == ["pool"]
    assert tiny.tag_names == TAGS and tiny.tag_families == TAG_FAMILIES
    assert ((tiny.lengths >= 20 * SR) & (tiny.lengths <= 30 * SR)).all()


def test_weak_labels_are_clean_labels_with_dropout(tiny):
    clean = clean_labels(tiny)
    assert (tiny.labels <= clean).all(), "dropout only removes tags"
    assert tiny.labels.sum() < clean.sum()
    scores = load_scores(tiny)
    drums = TAGS.index("drums")
    for i, tid in enumerate(tiny.tracks["track_id"]):
        played = {e[3] for e in scores[tid]["events"]}
        assert {t for t in INSTRUMENT_TAGS if clean[i, TAGS.index(t)]} == played
        if not clean[i, drums]:
            assert "drums" not in played


def test_second_build_reuses_the_corpus(tiny, monkeypatch):
    mtime = os.stat(tiny.root / "audio.i16").st_mtime_ns

    def boom(item):
        raise AssertionError("the corpus was generated again")

    monkeypatch.setattr(corpus, "_make_track", boom)
    again = build_corpus(TINY, root=tiny.root, progress=False, workers=1)
    assert again.root == tiny.root and os.stat(tiny.root / "audio.i16").st_mtime_ns == mtime


def test_interrupted_build_is_never_taken_for_whole(tiny, tmp_path, monkeypatch):
    root = tmp_path / "crash"
    real, calls = corpus._make_track, []

    def crash_after_three(item):
        calls.append(item)
        if len(calls) > 3:
            raise KeyboardInterrupt("simulated crash")
        return real(item)

    monkeypatch.setattr(corpus, "_make_track", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(TINY, root=root, progress=False, workers=1)
    assert not (root / "COMPLETE").exists()
    with pytest.raises((FileNotFoundError, ValueError)):
        AudioStore.open(root)
    monkeypatch.setattr(corpus, "_make_track", real)
    store = build_corpus(TINY, root=root, progress=False, workers=1)
    assert (root / "COMPLETE").is_file()
    # the resumed build is byte for byte the uninterrupted one
    assert (root / "audio.i16").read_bytes() == (tiny.root / "audio.i16").read_bytes()
    assert np.array_equal(store.labels, tiny.labels)
    assert load_scores(store) == load_scores(tiny)


def test_process_pool_gives_the_same_corpus(tmp_path):
    cfg = CorpusConfig(seed=3, n_pool=8, n_train=1, n_valid=0, n_test=0)
    a = build_corpus(cfg, root=tmp_path / "pool", progress=False, workers=2)
    b_audio, _, _ = corpus._make_track(corpus._plan(cfg)[7])[3:6]
    assert np.allclose(a.audio(7), b_audio / np.abs(b_audio).max(), atol=1e-4)


def test_headroom_check_runs_on_the_smoke_corpus(smoke_store):
    """Tags are learnable from the audio even at smoke size (24 train / 12 test tracks): a mean
    and std of the log-mel with a logistic regression gets 0.66 macro ROC-AUC on the weak test
    labels, 0.64 on the clean ones (deterministic; 12 tracks: the two differ by noise); a
    generator whose tags no longer follow its audio sits at 0.5."""
    out = corpus.headroom_check(smoke_store)
    assert out["macro_roc_auc"] > 0.58 and out["macro_roc_auc_clean"] > 0.58
    assert out["per_family"]["style"] > 0.65 and out["n_tags"] > 10


def test_a_partial_of_another_generator_is_discarded(tiny, tmp_path):
    from workbench.data.store import StoreWriter

    root = tmp_path / "stale"
    old = StoreWriter(root, SR, ["some", "other", "tags"])
    old.add("x", np.ones(100, np.float32), "pool")
    old.close()
    store = build_corpus(TINY, root=root, progress=False, workers=1)
    assert (root / "audio.i16").read_bytes() == (tiny.root / "audio.i16").read_bytes()
    assert len(store) == len(tiny)


def test_reverb_no_longer_gives_the_style_away(monkeypatch):
    """The room is drawn independently of the style: the reverb times of ambient and classical
    tracks (once 2.5-4 s and 1.5-2.5 s, separable by reverb alone: AUC 1.0) now overlap fully."""
    from sklearn.metrics import roc_auc_score

    from workbench.data import synth

    seen: list[float] = []
    real = synth.si.room_impulse_response
    monkeypatch.setattr(synth.si, "room_impulse_response", lambda rng, rt60: seen.append(rt60) or real(rng, rt60))
    rt60 = {}
    for style in ("ambient", "classical", "hiphop"):
        seen.clear()
        for seed in range(30):
            generate_track(900 + seed, style=style, seconds=5.0)
        rt60[style] = list(seen)
    assert all(0.4 <= r <= 4.0 for rs in rt60.values() for r in rs)
    for a, b in (("ambient", "classical"), ("ambient", "hiphop"), ("classical", "hiphop")):
        auc = roc_auc_score([1] * 30 + [0] * 30, rt60[a] + rt60[b])
        assert 0.25 < auc < 0.75, (a, b, auc)  # a reverb-only feature is near chance


# ----------------------------------------------------------------------------------- sampled instruments
def test_the_corpus_and_the_transfer_set_share_no_sample():
    """FluidR3_GM (the corpus) and TimGM6mb (the transfer set): no sample's data in both."""
    from workbench.data.soundfont import corpus_soundfont, sample_digests
    from workbench.data.transfer import soundfont_path

    corpus_samples, transfer_samples = sample_digests(corpus_soundfont()), sample_digests(soundfont_path())
    assert len(corpus_samples) > 800 and len(transfer_samples) > 200
    shared = set(corpus_samples) & set(transfer_samples)
    assert not shared, [corpus_samples[d] for d in shared]


def test_a_render_never_depends_on_the_renders_before_it():
    """One synthesizer a process, reset before each render: A, B, A gives A twice, bit for bit."""
    from workbench.data.soundfont import Player, corpus_soundfont

    player = Player(corpus_soundfont(), SR)
    a = [dict(channel=0, program=48, volume=100, pan=30, notes=[(0.0, 60, 100, 1.5), (0.5, 64, 90, 1.0)])]
    b = [dict(channel=0, program=19, volume=127, pan=100, notes=[(0.0, 48, 127, 2.0)]),
         dict(channel=9, program=0, bank=25, volume=120, pan=64, notes=[(0.1, 36, 127, 0.1)])]
    first = player.dry(a, 2.0)
    player.dry(b, 2.0)
    assert np.abs(first).max() > 0.01 and first.tobytes() == player.dry(a, 2.0).tobytes()


def test_an_inaudible_part_loses_its_tag(monkeypatch):
    """A part played far below the others is dropped from the score and its tag with it; the
    others keep theirs and every event left belongs to an instrument tagged."""
    _, score, tags = generate_track(104, style="jazz", seconds=8.0)
    quiet = [n for n in score["instruments"] if n != "drums"][-1]
    real = synth._parts

    def hushed(tr, rng):
        parts = real(tr, rng)
        for p in parts:
            if p["instrument"] == quiet:
                p["notes"] = [(o, pitch, 1, d) for o, pitch, v, d in p["notes"]]
                p["volume"] = 1
        return parts

    monkeypatch.setattr(synth, "_parts", hushed)
    _, hushed_score, hushed_tags = generate_track(104, style="jazz", seconds=8.0)
    assert quiet in tags and quiet not in hushed_tags and quiet not in hushed_score["instruments"]
    assert set(hushed_score["instruments"]) == set(score["instruments"]) - {quiet}
    assert {e[3] for e in hushed_score["events"]} == set(hushed_score["instruments"])


def test_tempo_stays_clear_of_the_class_boundaries():
    from workbench.data.synth_styles import TEMPO_CLASSES, TEMPO_GAP, draw_tempo

    rng = np.random.default_rng(0)
    edges = np.array([lo for _, lo, _ in TEMPO_CLASSES if lo > 0])
    for style in STYLES.values():
        bpm = np.array([draw_tempo(rng, style.tempo) for _ in range(200)])
        assert np.abs(bpm[:, None] - edges[None]).min() >= TEMPO_GAP
        assert style.tempo[0] <= bpm.min() and bpm.max() <= style.tempo[1]


def test_the_synth_renderer_keeps_the_same_score():
    """corpus.renderer=synth plays the same composition through the physical models."""
    _, sampled, _ = generate_track(21, style="pop", seconds=6.0)
    _, synthesised, _ = generate_track(21, style="pop", seconds=6.0, renderer="synth")
    assert synthesised["renderer"] == "synth" and synthesised["programs"] == {}
    heard = set(sampled["instruments"])
    assert [e for e in synthesised["events"] if e[3] in heard][:20] == [e for e in sampled["events"]][:20]
