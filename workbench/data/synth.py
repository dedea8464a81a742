"""The embedded corpus: procedurally composed multi-instrument music with multi-label tags.

No dataset can be downloaded, so the default data is generated. A track is drawn from a seed:
a style (`workbench.data.synth_styles`: tempo range, drum patterns, chord progressions, mode
prior, instrumentation priors),
then a key, mode, tempo, dynamics, brightness and a set of instruments. Its form is a sequence
of 4-bar sections (A, B, A, C, ...): sections change the chords, melody, drum pattern and
accompaniment figures, but never the track's identity (style, key, tempo, instruments, sound),
so that two segments of one track share what its tags describe. The score (note events) is
rendered by the timbres of `workbench.data.synth_instruments`, mixed, put in a synthetic room
and, for loud tracks, driven into a soft clipper.

Tags (`TAG_FAMILIES`) are computed from the score and the track parameters (style, instruments
present, mood from mode / tempo / brightness / dynamics, tempo class, vocal, loud/quiet,
solo/ensemble). `workbench.data.corpus` builds the corpus store from these tracks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import oaconvolve

from workbench.data import synth_instruments as si
from workbench.data.soundfont import AUDIBLE, Player, audible, corpus_soundfont
from workbench.data.synth_styles import ROOM_RT60, STYLES, TEMPO_CLASSES, bass_line, comp_line, draw_tempo, tempo_class

SPLITS = ("pool", "train", "valid", "test")
SCORES = "scores.jsonl"
# Bump when the generator's output changes: a corpus made by another version is reported (the
# folder name hashes the config only, so runs trained on an existing corpus keep finding it).
GENERATOR_VERSION = 3  # 2: the room's reverb drawn independently of the style; 3: sampled parts, tempo gap
RENDERERS = ("sampled", "synth")

INSTRUMENT_TAGS = ("drums", "bass", "guitar", "piano", "bells", "strings", "brass", "pad", "organ", "voice",
                   "flute", "marimba")
TAG_FAMILIES: dict[str, list[str]] = {
    "style": list(STYLES),
    "instrument": list(INSTRUMENT_TAGS),
    "mood": ["happy", "sad", "calm", "energetic", "dark", "bright"],
    "tempo": [name for name, _, _ in TEMPO_CLASSES],
    "vocal": ["vocal", "instrumental", "male vocal", "female vocal"],
    "dynamics": ["loud", "quiet"],
    "texture": ["solo", "ensemble"],
}
TAGS: list[str] = [t for family in TAG_FAMILIES.values() for t in family]
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Registers (lowest, highest midi) of each instrument's lines
RANGES = {"bass": (28, 52), "lead": (60, 84), "comp": (50, 74), "voice_male": (48, 67), "voice_female": (58, 79)}
SECTION_BARS = 4


@dataclass
class _Track:
    """Everything decided before the notes: the track's identity."""

    style: str
    seconds: float
    tempo: float
    key: int
    mode: str
    dynamics: float
    brightness: float
    instruments: list[str]
    lead: str | None
    timbre: dict[str, dict[str, Any]] = field(default_factory=dict)
    programs: dict[str, int] = field(default_factory=dict)  # sampled: instrument -> GM program (drums: kit)
    events: list[tuple[float, float, int, str, float]] = field(default_factory=list)  # onset, dur, pitch, inst, vel


def _draw_track(rng: np.random.Generator, style_name: str | None, seconds: float | None,
                min_seconds: float, max_seconds: float) -> _Track:
    style_name = style_name or str(rng.choice(list(STYLES)))
    st = STYLES[style_name]
    seconds = float(seconds if seconds is not None else rng.uniform(min_seconds, max_seconds))
    tempo = draw_tempo(rng, st.tempo)
    mode = "minor" if rng.uniform() < st.p_minor else "major"
    # mood leans on mode: minor pieces are played a little darker and softer, as listeners expect
    shift = -0.08 if mode == "minor" else 0.05
    dynamics = float(np.clip(rng.uniform(*st.dynamics) + shift, 0.05, 1.0))
    brightness = float(np.clip(rng.uniform(*st.brightness) + shift, 0.0, 1.0))
    if rng.uniform() < st.p_solo:
        instruments = [str(rng.choice(st.solo))]
    else:
        pitched = [n for n in st.instruments if n not in ("drums", "bass")]
        chosen = [n for n in pitched if rng.uniform() < st.instruments[n]]
        if not chosen:  # an ensemble needs at least one harmonic instrument
            w = np.array([st.instruments[n] for n in pitched])
            chosen = [pitched[int(rng.choice(len(pitched), p=w / w.sum()))]]
        chosen = sorted(chosen, key=lambda n: -st.instruments[n])[:4]  # keep the mix (and time) bounded
        rhythm = [n for n in ("drums", "bass") if rng.uniform() < st.instruments[n]]
        instruments = rhythm + chosen
        if len(instruments) == 1:  # a one-instrument track must be tagged solo: add bass to keep it an ensemble
            instruments = ["bass"] + instruments
    melodic = [n for n in ("voice", "flute", "brass", "bells", "marimba", "guitar", "piano", "organ", "strings", "pad")
               if n in instruments]
    lead = melodic[0] if melodic else None
    tr = _Track(style_name, seconds, tempo, int(rng.integers(12)), mode, dynamics, brightness, instruments, lead)
    for n in instruments:
        if n != "drums":
            tr.timbre[n] = si.timbre_params(n, rng, brightness)
    return tr


def _chord(degree: int, mode: str, key: int, seventh: bool) -> list[int]:
    """Pitch classes (relative to C, as midi mod 12 + octave offsets) of a diatonic triad or seventh."""
    sc = SCALES[mode]
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    return [key + sc[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in steps]


def _in_range(pc: int, lo: int, hi: int, near: float) -> int:
    """The midi note of pitch class ``pc`` in [lo, hi] nearest to ``near``."""
    cands = [pc % 12 + 12 * o for o in range(11) if lo <= pc % 12 + 12 * o <= hi]
    return min(cands, key=lambda m: abs(m - near)) if cands else int(np.clip(pc % 12 + 12 * (lo // 12 + 1), lo, hi))


def _compose(tr: _Track, rng: np.random.Generator) -> None:
    """Fill ``tr.events``: a form of 4-bar sections, each with its own chords, grooves and melody."""
    st = STYLES[tr.style]
    step = 60.0 / tr.tempo / 4.0  # a 16th in seconds
    spb = 4 * st.beats  # 16ths a bar
    n_bars = int(math.ceil(tr.seconds / (spb * step)))
    n_sections = int(math.ceil(n_bars / SECTION_BARS))
    form = ["A", "B", "A", "C", "B", "A", "C", "B"] if n_sections > 3 else ["A", "B", "A", "B"]
    plans: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(form[:n_sections]):
        prog = st.progressions[int(rng.integers(len(st.progressions)))]
        plans[label] = {
            "chords": [prog[(b // st.chord_bars) % len(prog)] for b in range(SECTION_BARS)],
            "sevenths": rng.uniform() < st.sevenths,
            "drums": st.drums[int(rng.integers(len(st.drums)))] if st.drums else None,
            "melody_seed": int(rng.integers(1 << 31)),
            "comp_seed": int(rng.integers(1 << 31)),
            "density": st.lead_density * rng.uniform(0.7, 1.3),
        }
    male = not tr.timbre.get("voice", {}).get("female", False)
    lead_range = RANGES["voice_male" if male else "voice_female"] if tr.lead == "voice" else RANGES["lead"]
    prev_lead = float(np.mean(lead_range))
    vel0 = 0.35 + 0.6 * tr.dynamics

    def t_of(bar: int, s: float) -> float:
        swing = st.swing * step if int(s) % 2 == 1 and s == int(s) else 0.0
        return (bar * spb + s) * step + swing

    def add(bar, s, dur_steps, pitch, inst, vel):
        onset = t_of(bar, s) + rng.normal(0, 0.004)
        if onset < tr.seconds:
            tr.events.append((max(onset, 0.0), dur_steps * step, int(pitch), inst, float(np.clip(vel, 0.05, 1.0))))

    for sec, label in enumerate(form[:n_sections]):
        plan = plans[label]
        mrng = np.random.default_rng(plan["melody_seed"] + sec // 4)  # repeats of a section vary a little
        crng = np.random.default_rng(plan["comp_seed"])
        for b in range(SECTION_BARS):
            bar = sec * SECTION_BARS + b
            if bar >= n_bars:
                break
            chord = _chord(plan["chords"][b], tr.mode, tr.key, plan["sevenths"])
            last = b == SECTION_BARS - 1
            if plan["drums"] and "drums" in tr.instruments:
                for drum, pat in plan["drums"].items():
                    for s, c in enumerate(pat[:spb]):
                        if c != "-" and not (last and s >= spb - 4 and drum in ("hat", "ride")):
                            add(bar, s, 1, si.DRUM_NOTES[drum], "drums", vel0 * {"x": 1.0, "o": 0.75, ".": 0.35}[c])
                    if last:  # a fill on the last beat of a section
                        for s in range(spb - 4, spb, 1 if tr.tempo < 120 else 2):
                            add(bar, s, 1, si.DRUM_NOTES["snare"], "drums", vel0 * (0.5 + 0.1 * (s % 4)))
            if "bass" in tr.instruments:
                for s, dur, pc in bass_line(st.bass, chord, spb, crng):
                    add(bar, s, dur, _in_range(pc, *RANGES["bass"], near=40), "bass", vel0 * rng.uniform(0.85, 1.0))
            for inst in tr.instruments:
                if inst in ("drums", "bass") or (inst == tr.lead and len(tr.instruments) > 1):
                    continue
                fig = st.comp if inst in si.PERCUSSIVE else ("stabs" if inst == "brass" and st.comp == "stabs"
                                                              else "sustain")
                for s, dur, k in comp_line(fig, len(chord), spb, crng):
                    pcs = chord if k < 0 else [chord[k % len(chord)] + 12 * (k // len(chord))]
                    for j, pc in enumerate(pcs):
                        add(bar, s + 0.15 * j * (fig == "strum"), dur, _in_range(pc, *RANGES["comp"], near=62),
                            inst, vel0 * rng.uniform(0.7, 0.9))
            if tr.lead is not None:
                grid = st.lead_step
                onsets = [s for s in range(0, spb, grid) if (s == 0 or mrng.uniform() < plan["density"])]
                for i, s in enumerate(onsets):
                    end = onsets[i + 1] if i + 1 < len(onsets) else spb
                    strong = s % 4 == 0
                    cands = chord if strong else [tr.key + d for d in SCALES[tr.mode]]
                    targets = [_in_range(pc, *lead_range, near=prev_lead + mrng.normal(0, 3)) for pc in cands]
                    pitch = min(targets, key=lambda m: abs(m - prev_lead - mrng.normal(0, 2.5)))
                    prev_lead = pitch
                    add(bar, s, max(end - s - 0.3, 0.7), pitch, tr.lead, vel0 * mrng.uniform(0.8, 1.0))


def _render(tr: _Track, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Mix the score into float32 (S,): one stem per instrument, note cache, room, master bus."""
    n_total = int(round(tr.seconds * sample_rate))
    stems: dict[str, np.ndarray] = {}
    cache: dict[tuple, np.ndarray] = {}
    kit = si.drum_kit(rng, tr.brightness, STYLES[tr.style].kit) if "drums" in tr.instruments else {}
    drum_of = {v: k for k, v in si.DRUM_NOTES.items()}
    for onset, dur, pitch, inst, vel in tr.events:
        start = int(onset * sample_rate)
        if inst == "drums":
            note = kit[drum_of[pitch]]
        else:
            gate = max(int(dur * sample_rate), 64)
            vq = round(vel * 8) / 8  # timbre follows a quantised velocity so notes can be cached
            key = (inst, pitch, gate, vq)
            if key not in cache:
                n = gate + int(si.TAIL[inst] * sample_rate)
                cache[key] = si.INSTRUMENTS[inst](pitch, n, gate, max(vq, 0.1), rng, tr.timbre[inst])
            note = cache[key]
        if inst not in stems:
            stems[inst] = np.zeros(n_total + sample_rate * 2)
        stem = stems[inst]
        seg = stem[start:start + len(note)]
        seg += vel * note[:len(seg)]
    mix = np.zeros(n_total + sample_rate * 2)
    for inst, stem in stems.items():
        level = {"drums": 0.9, "bass": 0.8}.get(inst, 0.6 if inst != tr.lead else 0.9)
        mix += level * 10 ** (rng.uniform(-4, 4) / 20) * stem / (np.sqrt(np.mean(stem ** 2)) + 1e-9)
    mix = mix[:n_total]
    return _master(_room(mix, rng), tr.dynamics, sample_rate)


# General MIDI programs (FluidR3_GM) each instrument tag draws from, once a track: several
# recordings a tag, none of them tied to a style. No pad that sings (91 choir, 94 halo): the
# vocal tags belong to the voice. Drum kits (bank 128) by the style's kind, each kind shared
# by several styles.
PROGRAMS: dict[str, tuple[int, ...]] = {
    "bass": (32, 33, 34, 35, 38), "guitar": (24, 25, 26, 27, 29), "piano": (0, 1, 2, 4, 5),
    "bells": (8, 9, 10, 14), "strings": (40, 42, 44, 48, 49), "brass": (56, 57, 60, 61), "pad": (88, 89, 90, 92, 95),
    "organ": (16, 17, 19), "voice": (52, 53, 54), "flute": (72, 73, 74, 75), "marimba": (11, 12, 13),
}
KITS = {"acoustic": (0, 8, 16, 32, 40), "electronic": (24, 25)}  # standard, room, power, jazz, brush; electronic, 808
SUSTAINED = ("strings", "pad", "organ", "voice", "flute", "brass")  # played legato: articulation near 1
_PLAYER: Player | None = None


def _player(sample_rate: int) -> Player:
    """This process's FluidR3_GM player, loaded on first use."""
    global _PLAYER
    if _PLAYER is None or _PLAYER.sample_rate != sample_rate:
        _PLAYER = Player(corpus_soundfont(), sample_rate)
    return _PLAYER


def _parts(tr: _Track, rng: np.random.Generator) -> list[dict]:
    """One `soundfont.Player` part an instrument of the score: a program (or kit) drawn for the
    track, a volume (the lead louder), a pan (bass, drums and lead near the centre) and an
    articulation (the share of each note's written length it sounds)."""
    parts = []
    channels = iter(c for c in range(16) if c != 9)
    for inst in tr.instruments:
        drums = inst == "drums"
        legato = inst in SUSTAINED
        articulation = 1.0 if drums else float(rng.uniform(0.9, 1.05) if legato else rng.uniform(0.55, 0.95))
        lead = inst == tr.lead or inst in ("bass", "drums")
        part = {"instrument": inst, "channel": 9 if drums else next(channels),
                "program": 0 if drums else int(rng.choice(PROGRAMS[inst])),
                "bank": int(rng.choice(KITS[STYLES[tr.style].kit])) if drums else 0,
                "volume": int(rng.integers(95, 121) if lead else rng.integers(70, 106)),
                "pan": int(64 + rng.integers(-12, 13) if lead else rng.integers(24, 105)),
                "notes": [(o, p, round(127 * v), d * articulation) for o, d, p, i, v in tr.events if i == inst]}
        parts.append(part)
    return parts


def _tilt(x: np.ndarray, brightness: float, sample_rate: int) -> np.ndarray:
    """A spectral tilt of +-6 dB at 8 kHz around 1 kHz (brightness 1: brighter, 0: darker), so
    the mood tags drawn from brightness ("dark", "bright") are heard in sampled parts too."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    slope = 0.66 * (brightness - 0.5)  # gain (f / 1 kHz) ** slope: 8 ** 0.33 = 2 (+6 dB) at 8 kHz for brightness 1
    return np.fft.irfft(spec * np.maximum(f / 1000.0, 1 / 16) ** slope, n=len(x))


def _render_sampled(tr: _Track, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Play the score from FluidR3_GM: every instrument alone (dry), an instrument below
    `soundfont.AUDIBLE` of the dry mix's RMS dropped from the score (so from the tags), the mix the
    sum of the instruments kept; then the track's brightness, room, bus and fades as `_render`."""
    n_total = int(round(tr.seconds * sample_rate))
    parts = _parts(tr, rng)
    player = _player(sample_rate)
    stems = [player.dry([p], tr.seconds).astype(np.float64) for p in parts]
    keep, _ = audible(stems, AUDIBLE)
    kept = {parts[i]["instrument"] for i in keep}
    tr.events = [e for e in tr.events if e[3] in kept]
    tr.programs = {parts[i]["instrument"]: parts[i]["bank" if parts[i]["channel"] == 9 else "program"] for i in keep}
    mix = _tilt(np.sum([stems[i] for i in keep], axis=0), tr.brightness, sample_rate)[:n_total]
    return _master(_room(mix, rng), tr.dynamics, sample_rate)


def _room(mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The track's synthetic room (`room_rt60`, `synth_instruments.room_impulse_response`) added
    at a random wet level, the same for both renderers."""
    ir = si.room_impulse_response(rng, room_rt60(rng))
    wet = oaconvolve(mix, ir)[:len(mix)]  # overlap-add FFT convolution: a long signal, a shorter IR
    return mix + rng.uniform(0.15, 0.45) * wet * np.sqrt(np.mean(mix ** 2) / (np.mean(wet ** 2) + 1e-12))


def _master(mix: np.ndarray, dynamics: float, sample_rate: int) -> np.ndarray:
    """Peak-normalise, drive a loud track's bus (a soft clipper: a smaller crest factor), fade in
    and out; float32 (S,) with peak 1."""
    n_total = len(mix)
    mix = mix / (np.abs(mix).max() + 1e-9)
    if dynamics > 0.6:  # loud: a driven bus compresses the crest factor
        drive = 1.0 + 5.0 * (dynamics - 0.6)
        mix = np.tanh(drive * mix) / np.tanh(drive)
    fade = min(int(0.8 * sample_rate), n_total // 4)
    mix[-fade:] *= np.linspace(1.0, 0.0, fade)
    mix[:160] *= np.linspace(0.0, 1.0, 160)
    return (mix / (np.abs(mix).max() + 1e-9)).astype(np.float32)


def _tags(tr: _Track) -> list[str]:
    present = sorted({e[3] for e in tr.events}, key=INSTRUMENT_TAGS.index)
    tags = [tr.style, *present]
    minor, t, d, b = tr.mode == "minor", tr.tempo, tr.dynamics, tr.brightness
    mood = {"happy": not minor and t >= 100 and d >= 0.4, "sad": minor and t < 100 and d < 0.7,
            "calm": t < 95 and d < 0.5, "energetic": t >= 118 and d >= 0.6,
            "dark": b < 0.35 or (minor and b < 0.5), "bright": b > 0.65 and not minor}
    tags += [m for m in TAG_FAMILIES["mood"] if mood[m]]
    tags.append(tempo_class(t))
    if "voice" in present:
        tags += ["vocal", "female vocal" if tr.timbre["voice"]["female"] else "male vocal"]
    else:
        tags.append("instrumental")
    if d >= 0.7:
        tags.append("loud")
    elif d <= 0.4:
        tags.append("quiet")
    tags.append("solo" if len(present) == 1 else "ensemble")
    return tags


def room_rt60(rng: np.random.Generator) -> float:
    """A track's reverb time: log-uniform over `ROOM_RT60`, independent of its style."""
    lo, hi = ROOM_RT60
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def generate_track(seed: int, style: str | None = None, seconds: float | None = None, sample_rate: int = 16_000,
                   min_seconds: float = 20.0, max_seconds: float = 30.0,
                   renderer: str = "sampled") -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """One track from a seed: ``(audio float32 (S,) peak 1, score dict, clean tags)``.

    ``renderer``: "sampled" plays the score from the recorded instruments of FluidR3_GM
    (`_render_sampled`), "synth" from the physical models of `synth_instruments` (`_render`);
    the score, and so the track's identity, is the same. The score holds the track parameters,
    ``programs`` (sampled: the General MIDI program, or drum kit, of each instrument heard) and
    ``events``: ``[onset s, duration s, midi pitch, instrument, velocity]`` of the instruments
    heard (drums use General MIDI drum numbers, `synth_instruments.DRUM_NOTES`).
    """
    if renderer not in RENDERERS:
        raise ValueError(f"corpus.renderer is {renderer!r}; expected one of {', '.join(RENDERERS)}")
    if renderer == "synth" and sample_rate != si.SR:
        raise ValueError(f"the synthesiser is written for {si.SR} Hz, got sample_rate={sample_rate}")
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    rng = np.random.default_rng(seed)
    tr = _draw_track(rng, style, seconds, min_seconds, max_seconds)
    _compose(tr, rng)
    audio = (_render_sampled if renderer == "sampled" else _render)(tr, rng, sample_rate)
    heard = [n for n in tr.instruments if any(e[3] == n for e in tr.events)]
    score = {"style": tr.style, "key": tr.key, "mode": tr.mode, "tempo": round(tr.tempo, 2),
             "seconds": round(len(audio) / sample_rate, 4), "dynamics": round(tr.dynamics, 3),
             "brightness": round(tr.brightness, 3), "instruments": heard, "lead": tr.lead,
             "renderer": renderer, "programs": tr.programs,
             "events": [[round(o, 4), round(d, 4), p, i, round(v, 3)] for o, d, p, i, v in tr.events]}
    return audio, score, _tags(tr)


# --------------------------------------------------------------------------- the corpus on disk
