"""The transfer set: deterministic from its seed, no audio in common with the corpus, and every
tag a fact of the rendered audio."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from workbench.config import TransferConfig
from workbench.data import transfer as T
from workbench.data.synth_styles import TEMPO_GAP

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


def test_splits_sizes_and_labels_are_the_audible_scores_tags(small_store, renderer):
    assert [len(small_store.indices(s)) for s in T.SPLITS] == [6, 3, 5]
    for i in range(len(small_store)):
        seed = int(small_store.tracks.seed.iloc[i])
        _, score = renderer.audible_clip(T.compose(seed, SMALL.seconds, SMALL.solo_share), seed=seed)
        assert [small_store.tag_names[k]
                for k in np.flatnonzero(small_store.labels[i])] == [t for t in T.TAGS if t in score["tags"]]


def _frame_hashes(samples: np.ndarray, frame: int = 8_000) -> set[bytes]:
    """Hashes of every non-silent half-second frame of int16 audio."""
    n = len(samples) // frame
    frames = np.asarray(samples[: n * frame]).reshape(n, frame)
    loud = np.abs(frames.astype(np.int32)).max(axis=1) > 64
    return {f.tobytes() for f in frames[loud]}


def test_no_audio_in_common_with_the_corpus(smoke_store, small_store):
    """Not one non-silent half second of the transfer set occurs in the corpus (which plays
    another SoundFont's samples: tests/test_synth.py checks that no sample is in both)."""
    assert not _frame_hashes(smoke_store.samples) & _frame_hashes(small_store.samples)


@pytest.mark.parametrize("seed", range(12))
def test_every_tag_is_a_fact_of_the_audio(renderer, seed):
    """The clip is the sum of its parts rendered alone (in the room), every part kept carries at
    least `AUDIBLE` of the mix's level, and the tags are exactly what the kept parts and the score
    say: the families that sound, the tempo class (outside the gap around each boundary), solo
    when one instrument sounds, the style. Rendering the mix in one synthesizer differs from the
    sum of the parts by a few percent (TinySoundFont's 64-sample envelope blocks; 2.2 % at most here)."""
    score = T.compose(seed, 8.0)
    audio, kept = renderer.audible_clip(score, seed=seed)
    stems = [renderer.dry(kept, [i]) for i in range(len(kept["parts"]))]
    mix = np.sum(stems, axis=0)
    rms = np.sqrt(np.mean(mix ** 2))
    assert rms > 1e-3
    for part, stem in zip(kept["parts"], stems):
        assert np.sqrt(np.mean(stem ** 2)) >= T.AUDIBLE * rms, f"{part['family']} is inaudible in seed {seed}"
    np.testing.assert_allclose(audio, T.room(mix.astype(np.float32), kept["reverb"]["rt60"], kept["reverb"]["wet"],
                                             16_000, seed), rtol=1e-5, atol=1e-6)
    one_synth = renderer.dry(kept)
    assert np.linalg.norm(one_synth - mix) <= 0.05 * np.linalg.norm(one_synth)
    families = {p["family"] for p in kept["parts"]}
    assert set(kept["tags"]) & set(T.TAG_FAMILIES["instrument"]) == families
    lo, hi = next((lo, hi) for name, lo, hi in T.TEMPO_CLASSES if name == kept["tempo"])
    assert lo <= kept["tempo_bpm"] < hi and kept["tempo"] in kept["tags"]
    assert ("solo" in kept["tags"]) == (len(kept["parts"]) == 1) != ("ensemble" in kept["tags"])
    assert kept["style"] in kept["tags"]


SCORES = 1500  # composed (not rendered) clips for the statistics of the tags
CUE_AUC_MAX = 0.9  # no single cue of the score predicts a style better than this


@pytest.fixture(scope="module")
def scores():
    return [T.compose(seed, 20.0) for seed in range(SCORES)]


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, x))


def test_no_single_cue_gives_a_style_away(scores):
    """Every cue a score is built from (accompaniment figure, meter, swing, walking bass, cymbal,
    hi-hat density, drums, bass, solo, tempo) predicts each style with a ROC-AUC of at most
    `CUE_AUC_MAX` on its own, and the tempo (bpm) is drawn independently of the style."""
    def cue_values(sc: dict) -> dict[str, object]:
        roles = {p["role"] for p in sc["parts"]}
        return {**{k: v for k, v in sc["cues"].items()}, "drums": "drums" in roles, "bass": "bass" in roles,
                "solo": sc["solo"], "tempo": sc["tempo"]}

    cues = [cue_values(sc) for sc in scores]
    styles = np.array([sc["style"] for sc in scores])
    worst = (0.0, "")
    for style in T.STYLES:
        y = (styles == style).astype(int)
        for name in cues[0]:
            for value in {c[name] for c in cues}:
                x = np.array([c[name] == value for c in cues], dtype=float)
                auc = max(_auc(x, y), 1 - _auc(x, y))
                worst = max(worst, (auc, f"{name}={value} for {style}"))
        bpm = np.array([sc["tempo_bpm"] for sc in scores])
        assert abs(_auc(bpm, y) - 0.5) < 0.06, style  # the tempo says nothing of the style
    assert worst[0] <= CUE_AUC_MAX, worst


def test_tempo_tags_keep_a_gap_around_each_boundary(scores):
    bpm = np.array([sc["tempo_bpm"] for sc in scores])
    for _, lo, _ in T.TEMPO_CLASSES[1:]:
        assert np.abs(bpm - lo).min() >= TEMPO_GAP
    assert {sc["tempo"] for sc in scores} == {name for name, _, _ in T.TEMPO_CLASSES}


def _preset_samples(path, program: int) -> set[str]:
    """The sample names a General MIDI program (bank 0) of a SoundFont 2 file plays, read from
    its preset, instrument and sample headers (SoundFont 2.04: phdr/pbag/pgen, inst/ibag/igen, shdr)."""
    import struct

    data = path.read_bytes()
    hydra, off = {}, 12
    while off < len(data):
        cid, size = data[off:off + 4], struct.unpack("<I", data[off + 4:off + 8])[0]
        if cid == b"LIST" and data[off + 8:off + 12] == b"pdta":
            o = off + 12
            while o < off + 8 + size:
                c2, s2 = data[o:o + 4].decode(), struct.unpack("<I", data[o + 4:o + 8])[0]
                hydra[c2] = data[o + 8:o + 8 + s2]
                o += 8 + s2
        off += 8 + size + (size & 1)

    def records(name, fmt):
        n = struct.calcsize(fmt)
        return [struct.unpack(fmt, hydra[name][i:i + n]) for i in range(0, len(hydra[name]), n)]

    phdr, pbag, pgen = records("phdr", "<20sHHHIII"), records("pbag", "<HH"), records("pgen", "<HH")
    inst, ibag, igen = records("inst", "<20sH"), records("ibag", "<HH"), records("igen", "<HH")
    shdr = records("shdr", "<20sIIIIIBbHH")
    k = next(i for i, h in enumerate(phdr[:-1]) if h[1] == program and h[2] == 0)
    insts = {amount for b in range(phdr[k][3], phdr[k + 1][3]) for op, amount in pgen[pbag[b][0]:pbag[b + 1][0]]
             if op == 41}  # 41: instrument
    return {shdr[amount][0].split(b"\0")[0].decode() for i in insts for b in range(inst[i][1], inst[i + 1][1])
            for op, amount in igen[ibag[b][0]:ibag[b + 1][0]] if op == 53}  # 53: sampleID


def test_the_synth_tag_comes_from_oscillator_samples():
    """TimGM6mb builds its pads (programs 88-95) from string, voice and guitar samples; the
    synth family keeps the leads whose samples are oscillator waves."""
    path = T.soundfont_path()
    for program in T.FAMILIES["synth"]:
        samples = _preset_samples(path, program)
        assert samples and all("Wave" in s for s in samples), (program, samples)
    assert any("Strings" in s for s in _preset_samples(path, 89))  # what the synth tag used to be


def test_a_missing_soundfont_package_is_named(monkeypatch):
    monkeypatch.setattr(T, "SOUNDFONT", ("no_such_package_here", "x.sf2"))
    with pytest.raises(FileNotFoundError, match="no_such_package_here"):
        T.soundfont_path()
