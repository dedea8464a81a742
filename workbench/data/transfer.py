"""The transfer set: labeled clips played by recorded instrument samples that the corpus never used.

What an encoder pretrained on the embedded corpus learns should carry over to real recordings.
The workbench cannot download any, so it builds a check it owns: short pieces performed from a
General MIDI SoundFont, whose instruments are recordings of real pianos, guitars, strings, brass,
reeds, drums and voices, rendered offline by TinySoundFont (the ``tinysoundfont`` package, a C
library with wheels for every platform) from ``TimGM6mb.sf2``, the SoundFont that ships inside the
``pretty_midi`` package (Tim Brechbill's TimGM6mb, GPL-2.0; the rendered audio stays on the user's
machine). The embedded corpus (`workbench.data.synth`) synthesises its instruments from physical
models and never reads a SoundFont, so no audio is shared between pretraining and this set
(tests/test_transfer.py checks it on the audio itself).

Each clip (``seconds`` long, ``seed``-determined): a style (ballad, rock, waltz, swing, arpeggio)
and its cues, a tempo, a key and mode, a four-chord progression, then either one instrument
alone (``solo``: it plays the style's figure and the tune) or an ensemble of melody,
accompaniment, bass and drums drawn from General MIDI families. A style is a combination of cues
that no single one gives away (`STYLES`): two or three accompaniment figures a style, some shared;
a share of clips in 3/4 and a share swung; a walking or a root bass; the cymbal (hi-hat or ride)
and its density drawn whatever the style; the tempo drawn from one range for every style. The
performance is expressive: a velocity arc per phrase, a downbeat accent and per-note variation,
timing jitter, and articulation (legato to staccato) per part; the mix has a volume and a pan
per part, a stereo fold-down and a room reverb of random size. Tags (22): the instrument
families that play (12), the tempo class (`synth_styles.TEMPO_CLASSES`, the corpus's; no clip
within `TEMPO_GAP` bpm of a boundary), solo or ensemble, and the style. Every tag is a fact of
the rendered audio, checked for every clip as it is built: each part is rendered alone, a part
below `AUDIBLE` of the mix's level is dropped with its tag, and the mix is the sum of the parts
kept (`Renderer.audible_clip`).

``python -m workbench evaluate --dataset transfer --runs data/runs/...`` evaluates encoders on it
through the same path as any dataset; ``make demo`` reports it beside the embedded test split.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve
from tqdm.auto import tqdm

from workbench.config import TransferConfig, data_dir
from workbench.data.soundfont import AUDIBLE, TRANSFER_SOUNDFONT, Player, audible
from workbench.data.store import AudioStore, StoreWriter
from workbench.data.synth_styles import TEMPO_CLASSES, draw_tempo, tempo_class
from workbench.locks import build_lock
from workbench.workers import worker_results

TRANSFER_VERSION = 2  # 2: style cues shared, tempo gap, synth leads only, audibility at build
SPLITS = ("train", "valid", "test")
SOUNDFONT = TRANSFER_SOUNDFONT  # (package, file inside it)

# General MIDI families (program ranges) and the programs each role draws from
FAMILIES: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 2, 4, 5), "mallets": (8, 11, 12, 13), "organ": (16, 17, 19), "guitar": (24, 25, 26, 27, 29),
    "bass": (32, 33, 34, 35, 38), "strings": (40, 41, 42, 48, 49), "voice": (52, 53), "brass": (56, 57, 60, 61),
    # synth: the square, saw and saw-bass leads, the programs TimGM6mb builds from oscillator-wave
    # samples (its pads, 88-95, play string, voice and guitar samples: tests/test_transfer.py)
    "reed": (64, 65, 66, 68, 71), "pipe": (73, 74, 75), "synth": (80, 81, 87),
}
ROLES = {"melody": ("piano", "mallets", "guitar", "strings", "brass", "reed", "pipe", "synth", "voice", "organ"),
         "chords": ("piano", "organ", "guitar", "strings", "synth", "voice", "mallets"),
         "bass": ("bass",)}
# A style is a combination of cues, none of which gives it away alone (tests/test_transfer.py
# bounds the AUC of every single cue): each style plays two or three accompaniment figures, some
# shared with other styles, and has a share of clips in 3/4 and a share swung; the tempo is drawn
# from one range whatever the style; cymbal and hi-hat density are drawn independently of it.
STYLES = {  # figures, P(3/4), P(swung), P(walking bass), backbeat drums, melody note lengths (beats)
    "ballad": dict(figures=("sustain", "arpeggio", "halves"), p_three=0.4, p_swing=0.3, p_walk=0.0,
                   backbeat=False, lengths=(1.0, 2.0, 3.0)),
    "rock": dict(figures=("eighths", "stabs", "halves"), p_three=0.0, p_swing=0.15, p_walk=0.3,  # shuffles
                 backbeat=True, lengths=(0.5, 1.0, 1.0, 2.0)),
    "waltz": dict(figures=("waltz", "arpeggio", "sustain"), p_three=1.0, p_swing=0.2, p_walk=0.0,  # jazz waltzes
                  backbeat=False, lengths=(1.0, 1.0, 2.0, 3.0)),
    "swing": dict(figures=("comp", "stabs", "halves"), p_three=0.2, p_swing=0.85, p_walk=0.7,
                  backbeat=False, lengths=(0.5, 1.0, 1.0, 2.0)),
    "arpeggio": dict(figures=("arpeggio", "eighths", "sustain"), p_three=0.4, p_swing=0.2, p_walk=0.0,
                     backbeat=False, lengths=(0.5, 1.0, 2.0)),
}
BPM_RANGE = (60.0, 180.0)  # every style
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 5), (0, 3, 4, 3), (5, 3, 0, 4), (0, 4, 3, 4))
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
TAG_FAMILIES = {"instrument": [*FAMILIES, "drums"], "tempo": [t for t, _, _ in TEMPO_CLASSES],
                "texture": ["solo", "ensemble"], "style": list(STYLES)}
TAGS = [t for tags in TAG_FAMILIES.values() for t in tags]


def soundfont_path() -> Path:
    """The SoundFont inside its package, found without importing the package."""
    package, name = SOUNDFONT
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the transfer set needs {name} from the {package!r} package; install the locked "
                                f"environment (make test) or pip install {package}")
    return Path(next(iter(spec.submodule_search_locations))) / name


def transfer_root(cfg: TransferConfig) -> Path:
    blob = repr((asdict(cfg), TRANSFER_VERSION)).encode()
    return data_dir() / "corpus" / f"transfer-{hashlib.sha256(blob).hexdigest()[:10]}"


# ----------------------------------------------------------------------------------- composition
def family_of(program: int) -> str:
    return next(f for f, programs in FAMILIES.items() if program in programs)


def compose(seed: int, seconds: float, solo_share: float = 0.25) -> dict:
    """A clip's score: style and its cues (figure, meter, swing, bass, cymbal), tempo, key, parts
    (role, program, channel, notes (onset s, pitch, velocity, duration s)), mix and the tags it
    earns. A solo clip is one polyphonic instrument playing its style's figure and the melody."""
    rng = np.random.default_rng([seed, 7])
    style = str(rng.choice(list(STYLES)))
    st = STYLES[style]
    cues = dict(figure=str(rng.choice(st["figures"])), meter=3 if rng.uniform() < st["p_three"] else 4,
                swing=0.64 if rng.uniform() < st["p_swing"] else 0.5, walk=bool(rng.uniform() < st["p_walk"]),
                cymbal=str(rng.choice(["hat", "ride"])), hats=str(rng.choice(["eighths", "quarters"])))
    if cues["figure"] == "waltz" and cues["meter"] != 3:
        cues["figure"] = "sustain"
    bpm = draw_tempo(rng, BPM_RANGE)
    beat, meter = 60.0 / bpm, cues["meter"]
    mode = str(rng.choice(list(SCALES)))
    tonic = int(rng.integers(0, 12))
    scale = np.array(SCALES[mode])
    chords = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    bars = int(np.ceil(seconds / (beat * meter))) + 1
    solo = bool(rng.uniform() < solo_share)

    def chord_pitches(bar: int, octave: int) -> list[int]:
        degree = chords[bar % len(chords)]
        return [12 * octave + tonic + int(scale[(degree + k) % 7]) + 12 * ((degree + k) // 7) for k in (0, 2, 4)]

    def humanise(t: float) -> float:
        return max(0.0, t + float(rng.normal(0, 0.012)))

    def velocity(t: float, base: float) -> int:  # a phrase arc of 4 bars, an accent on the downbeat
        arc = np.sin(np.pi * ((t / (4 * meter * beat)) % 1.0))
        downbeat = 8 * (abs((t / beat) % meter) < 1e-6)
        return int(np.clip(base + 18 * arc + downbeat + rng.normal(0, 6), 20, 127))

    def swung(b: float) -> float:  # eighth-note position b (in beats) under the clip's feel
        whole, frac = divmod(b, 1.0)
        return (whole + (cues["swing"] if abs(frac - 0.5) < 1e-6 else frac)) * beat

    def melody(articulation: float) -> list[tuple]:
        notes, t, deg = [], 0.0, int(rng.integers(0, 7))
        while t < bars * meter:
            length = float(rng.choice(st["lengths"]))
            if rng.uniform() > 0.12:  # rests
                deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2]), -3, 10))
                pitch = 60 + tonic + int(scale[deg % 7]) + 12 * (deg // 7)
                on = swung(t)
                notes.append((humanise(on), pitch, velocity(on, 78), length * beat * articulation))
            t += length
        return notes

    def accompaniment(articulation: float) -> list[tuple]:
        notes, figure = [], cues["figure"]
        for bar in range(bars):
            pitches, b0 = chord_pitches(bar, 4), bar * meter
            if figure == "sustain":
                hits = [(b0, pitches, meter)]
            elif figure == "halves":
                hits = [(b0 + k, pitches, 2.0 if meter == 4 else 1.5) for k in ((0, 2) if meter == 4 else (0, 1.5))]
            elif figure == "eighths":
                hits = [(b0 + k / 2, pitches, 0.5) for k in range(2 * meter)]
            elif figure == "waltz":
                hits = [(b0, pitches[:1], 1.0)] + [(b0 + k, pitches[1:], 1.0) for k in (1, 2)]
            elif figure == "comp":
                hits = [(b0 + k + 0.5, pitches, 0.5) for k in range(meter - 1)]  # off-beat comping
            elif figure == "stabs":
                hits = [(b0 + k, pitches, 0.25) for k in range(1, meter, 2)]  # short chords on the backbeats
            else:  # arpeggio
                seq = pitches + [pitches[1] + 12, pitches[2]]
                hits = [(b0 + k / 2, [seq[k % len(seq)]], 0.5) for k in range(2 * meter)]
            for b, ps, dur in hits:
                on = swung(b)
                for p in ps:
                    notes.append((humanise(on), p, velocity(on, 62), dur * beat * articulation))
        return notes

    def bassline(articulation: float) -> list[tuple]:
        notes = []
        for bar in range(bars):
            root = 36 + tonic + int(scale[chords[bar % len(chords)]])
            steps = range(meter) if cues["walk"] else (0, meter // 2 + (meter == 3))
            for k, b in enumerate(steps):
                pitch = root + (7 if cues["walk"] and k % 2 else 0)
                on = swung(bar * meter + b)
                notes.append((humanise(on), pitch, velocity(on, 84), beat * articulation * (1 if k else 1.5)))
        return notes

    def drums() -> list[tuple]:
        notes, cymbal = [], 42 if cues["cymbal"] == "hat" else 51  # closed hi-hat or ride
        for bar in range(bars):
            for k in range(2 * meter):  # eighth notes
                on, b = swung(bar * meter + k / 2), k / 2
                if k % 2 == 0:
                    backbeat = st["backbeat"] and meter == 4 and b in (1, 3)
                    hit = 38 if backbeat or (meter == 3 and b > 0) else 36
                    notes.append((humanise(on), hit, velocity(on, 92), 0.1))
                if cues["hats"] == "eighths" or k % 2 == 0:
                    notes.append((humanise(on), cymbal, velocity(on, 60), 0.08))
        return notes

    def program(role: str) -> int:
        fam = str(rng.choice(list(ROLES[role])))
        return int(rng.choice(FAMILIES[fam]))

    parts = []
    if solo:  # one instrument plays the figure and the tune: the style is in the audio
        notes = accompaniment(float(rng.uniform(0.6, 1.0))) + melody(float(rng.uniform(0.5, 0.95)))
        parts.append(dict(role="solo", program=program("chords"), channel=0, notes=sorted(notes)))
    else:
        parts.append(dict(role="melody", program=program("melody"), channel=0,
                          notes=melody(float(rng.uniform(0.4, 0.95)))))
        parts.append(dict(role="chords", program=program("chords"), channel=1,
                          notes=accompaniment(float(rng.uniform(0.6, 1.0)))))
        if rng.uniform() < 0.85:
            parts.append(dict(role="bass", program=program("bass"), channel=2,
                              notes=bassline(float(rng.uniform(0.5, 0.95)))))
        if rng.uniform() < 0.7:
            parts.append(dict(role="drums", program=0, channel=9, notes=drums()))
    for p in parts:
        p["volume"] = int(rng.integers(70, 118))
        p["pan"] = int(rng.integers(24, 104)) if p["role"] not in ("bass", "drums") else 64
        p["family"] = "drums" if p["role"] == "drums" else family_of(p["program"])
        p["notes"] = [n for n in p["notes"] if n[0] < seconds - 0.05]
    room_ = dict(rt60=float(rng.uniform(0.2, 1.4)), wet=float(rng.uniform(0.08, 0.3)))
    score = dict(style=style, tempo_bpm=bpm, tempo=tempo_class(bpm), key=tonic, mode=mode, seconds=seconds,
                 parts=parts, cues=cues, reverb=room_)
    return with_tags(score)


def with_tags(score: dict) -> dict:
    """``score`` with its tags: the families of its parts, the tempo class, solo or ensemble, the style."""
    solo = len(score["parts"]) == 1
    tags = sorted({p["family"] for p in score["parts"]}) + [score["tempo"], "solo" if solo else "ensemble",
                                                           score["style"]]
    return {**score, "solo": solo, "tags": tags}


# ----------------------------------------------------------------------------------- rendering
class Renderer:
    """The transfer set's SoundFont in a `soundfont.Player` (loaded once, reset before every
    render, so a clip never depends on the clips rendered before it in the same process, and so
    not on the number of workers); `render` plays a score into mono float32."""

    def __init__(self, sample_rate: int = 16_000):
        self.sample_rate = sample_rate
        self.player = Player(soundfont_path(), sample_rate)

    def render(self, score: dict, parts: list[int] | None = None, seed: int = 0) -> np.ndarray:
        """The clip (S,) in [-1, 1]; ``parts`` (indices) renders only those parts, the mix
        otherwise (same volume, pan and room: a part alone is exactly its share of the mix)."""
        return room(self.dry(score, parts), score["reverb"]["rt60"], score["reverb"]["wet"], self.sample_rate, seed)

    def dry(self, score: dict, parts: list[int] | None = None) -> np.ndarray:
        """The parts ``parts`` (all by default) of ``score`` played dry, before the room: (S,)."""
        chosen = [p for i, p in enumerate(score["parts"]) if parts is None or i in parts]
        return self.player.dry(chosen, score["seconds"])

    def audible_clip(self, score: dict, seed: int = 0) -> tuple[np.ndarray, dict]:
        """(audio, score) of a clip whose every tag is a fact of its audio: each part is rendered
        alone (dry), a part below `AUDIBLE` of the dry mix's RMS is dropped from the score (and
        its tag with it), and the mix is the sum of the parts kept, in the room. The score
        records each kept part's level relative to the mix (``level_db``)."""
        stems = [self.dry(score, [i]) for i in range(len(score["parts"]))]
        keep, level_db = audible(stems, AUDIBLE)
        parts = [{**score["parts"][i], "level_db": level_db[i]} for i in keep]
        score = with_tags({**score, "parts": parts})
        mix = np.sum([stems[i] for i in keep], axis=0).astype(np.float32)
        return room(mix, score["reverb"]["rt60"], score["reverb"]["wet"], self.sample_rate, seed), score


def room(dry: np.ndarray, rt60: float, wet: float, sample_rate: int, seed: int) -> np.ndarray:
    """Dry plus ``wet`` of a diffuse room: exponentially decaying noise (-60 dB at ``rt60`` s)."""
    n = int(rt60 * sample_rate)
    rng = np.random.default_rng([seed, 11])
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / max(n, 1))
    ir = (ir / (np.sqrt((ir ** 2).sum()) + 1e-12)).astype(np.float32)  # float32 throughout: 3x faster
    return (dry + np.float32(wet) * fftconvolve(dry.astype(np.float32), ir)[: len(dry)]).astype(np.float32)


# ----------------------------------------------------------------------------------- the store
def _plan(cfg: TransferConfig) -> list[tuple[str, str, int]]:
    sizes = {"train": cfg.n_train, "valid": cfg.n_valid, "test": cfg.n_test}
    items, i = [], 0
    for split in SPLITS:
        for _ in range(sizes[split]):
            items.append((f"transfer-{i:05d}", split, int(np.random.SeedSequence([cfg.seed, i]).generate_state(1)[0])))
            i += 1
    return items


_RENDERER: Renderer | None = None


def _init_renderer(sample_rate: int) -> None:
    global _RENDERER
    _RENDERER = Renderer(sample_rate)


def _make_clip(item: tuple) -> tuple:
    track_id, split, seed, seconds, solo_share = item
    audio, score = _RENDERER.audible_clip(compose(seed, seconds, solo_share), seed=seed)
    return track_id, split, seed, audio, score


def build_transfer(cfg: TransferConfig = TransferConfig(), root: Path | None = None, progress: bool = True,
                   workers: int | None = None) -> AudioStore:
    """Render the transfer set once into `transfer_root` (or ``root``) and open it; later calls
    reuse it. A process pool (``workers``, default 2 or fewer cores) renders; the store appears,
    complete, at the end, and an interrupted build resumes (the clips are deterministic)."""
    root = Path(root) if root is not None else transfer_root(cfg)
    if (root / "COMPLETE").is_file():
        return AudioStore.open(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(root):
        if (root / "COMPLETE").is_file():
            return AudioStore.open(root)
        if root.exists():
            shutil.rmtree(root)
        meta = {"dataset": "transfer", "pretrain_splits": ["train"], "params": {"transfer": asdict(cfg)},
                "version": TRANSFER_VERSION, "soundfont": SOUNDFONT[1],
                "notes": "General MIDI SoundFont performances; labels are exact (no dropout)"}
        writer = StoreWriter(root, cfg.sample_rate, TAGS, TAG_FAMILIES, meta=meta, resume=True)
        done = writer.done_ids()
        todo = [(tid, split, seed, cfg.seconds, cfg.solo_share) for tid, split, seed in _plan(cfg) if tid not in done]
        n_workers = workers or min(2, os.cpu_count() or 1)
        bar = tqdm(total=len(todo) + len(done), initial=len(done), desc=f"transfer set {root.name}", unit="clip",
                   disable=not progress)
        with writer, worker_results(_make_clip, todo, n_workers, _init_renderer, (cfg.sample_rate,),
                                    chunksize=4) as results:
            try:
                for track_id, split, seed, audio, score in results:
                    writer.add(track_id, audio, split, np.isin(TAGS, score["tags"]).astype(np.uint8),
                               source=f"transfer:{seed}", seed=seed, style=score["style"], tempo=score["tempo_bpm"],
                               key=score["key"], mode=score["mode"], seconds=score["seconds"],
                               programs="|".join(str(p["program"]) for p in score["parts"]))
                    bar.update()
            finally:
                bar.close()
        return AudioStore.open(root)
