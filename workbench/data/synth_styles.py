"""Styles of the embedded corpus: the priors a track is drawn from, and the figures its band plays.

A `Style` is a genre-like recipe: tempo range, mode prior, chord progressions (scale degrees,
one chord a bar), drum patterns (one character a 16th), instrumentation priors (overlapping
between styles on purpose, so an instrument never gives a style away), bass and accompaniment
figures, dynamics and brightness. The room is NOT a style's: every track's reverb time is drawn
from one range (`ROOM_RT60`), so reverb alone never gives a style away (it used to: classical
1.5-2.5 s and ambient 2.5-4 s were separable by their room). `bass_line` and `comp_line` turn a figure name and a
chord into one bar of notes. Used by `workbench.data.synth`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Reverb time RT60 (s) of every track, drawn log-uniformly whatever its style.
ROOM_RT60 = (0.4, 4.0)

# The tempo tags of the corpus and the transfer set (bpm): one home for their names and bounds.
TEMPO_CLASSES = (("slow", 0.0, 90.0), ("medium", 90.0, 125.0), ("fast", 125.0, float("inf")))
TEMPO_GAP = 6.0  # no track or clip within this many bpm of a class boundary: a tempo tag is never a coin toss


def tempo_class(bpm: float) -> str:
    """The tempo tag of ``bpm`` (`TEMPO_CLASSES`: lower bound included)."""
    return next(name for name, lo, hi in TEMPO_CLASSES if lo <= bpm < hi)


def draw_tempo(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A tempo from the style's range, never within `TEMPO_GAP` bpm of a tempo class boundary
    (a tempo tag is never a coin toss); every style's range leaves room outside the gaps."""
    edges = [lo for _, lo, _ in TEMPO_CLASSES if lo > 0]
    while True:
        bpm = float(rng.uniform(*bounds))
        if all(abs(bpm - e) >= TEMPO_GAP for e in edges):
            return bpm



@dataclass(frozen=True)
class Style:
    """A genre-like style: the priors a track of this style is drawn from."""

    tempo: tuple[float, float]  # bpm range
    p_minor: float
    progressions: tuple[tuple[int, ...], ...]  # scale degrees (0 = tonic), one chord a bar
    drums: tuple[dict[str, str], ...]  # patterns: drum -> one char a 16th ('x' accent, 'o' hit, '.' ghost)
    instruments: dict[str, float]  # probability that an ensemble track has each instrument
    bass: str  # bass figure, see `bass_line`
    comp: str  # accompaniment figure of plucked / struck instruments, see `comp_line`
    lead_density: float  # probability of a melody onset on each 8th (16th when lead_step is 1)
    dynamics: tuple[float, float]
    brightness: tuple[float, float]
    beats: int = 4
    lead_step: int = 2  # melody grid in 16ths
    sevenths: float = 0.1
    swing: float = 0.0  # delay of the off-beat 16th pairs, as a fraction of a 16th
    p_solo: float = 0.0
    solo: tuple[str, ...] = ("piano",)
    kit: str = "acoustic"
    chord_bars: int = 1  # bars per chord


def _p(**kw: str) -> dict[str, str]:
    return kw


ROCK_BEAT = _p(kick="x-------x-x-----", snare="----x-------x---", hat="x-o-x-o-x-o-x-o-")
BACKBEAT = _p(kick="x-------x-------", snare="----x-------x---", hat="o-o-o-o-o-o-o-o-")
STYLES: dict[str, Style] = {
    "rock": Style((100, 150), 0.4, ((0, 3, 0, 4), (5, 3, 0, 4), (0, 4, 3, 3), (0, 5, 3, 4)),
                  (ROCK_BEAT, _p(kick="x-----x-x-------", snare="----x-------x--.", hat="x-x-x-x-x-x-x-x-"),
                   _p(kick="x-------x-x-----", snare="----x-------x---", ride="x-o-x-o-x-o-x-o-",
                      crash="x---------------")),
                  dict(drums=.95, bass=.9, guitar=.9, piano=.25, organ=.3, voice=.55, strings=.12, brass=.1, pad=.12,
                       flute=.03, bells=.03, marimba=.02), "roots8", "strum", .35, (.55, 1.0), (.45, .95)),
    "pop": Style((88, 128), 0.3, ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (3, 0, 4, 5)),
                 (BACKBEAT, _p(kick="x--x----x-------", clap="----x-------x---", hat="xoxoxoxoxoxoxoxo"),
                  _p(kick="x-------x--x----", snare="----x-------x---", hat="--o---o---o---o-")),
                 dict(drums=.9, bass=.85, guitar=.5, piano=.6, pad=.4, strings=.3, voice=.65, bells=.15, brass=.15,
                      organ=.1, flute=.1, marimba=.1), "roots", "block", .45, (.4, .9), (.4, .85),
                 sevenths=.2, p_solo=.05, solo=("piano", "guitar")),
    "jazz": Style((70, 190), 0.45, ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (0, 3, 1, 4)),
                  (_p(ride="x---x-.xx---x-.x", hat="----x-------x---", kick="x---------.-----",
                      snare="------.-------.-"),
                   _p(ride="x---x--xx---x--x", hat="----x-------x---", snare="--.-----.--.----")),
                  dict(drums=.85, bass=.95, piano=.8, brass=.55, guitar=.35, organ=.25, voice=.35, flute=.25,
                       strings=.1, bells=.05, marimba=.1, pad=.02), "walking", "jazz", .55, (.3, .8), (.3, .75),
                  sevenths=1.0, swing=.33, p_solo=.12, solo=("piano", "guitar")),
    "electronic": Style((118, 140), 0.6, ((0, 5, 2, 6), (0, 0, 5, 5), (0, 6, 5, 6), (5, 3, 0, 4)),
                        (_p(kick="x---x---x---x---", clap="----x-------x---", open_hat="--x---x---x---x-",
                            hat="xxxxxxxxxxxxxxxx"),
                         _p(kick="x---x---x---x---", snare="----x-------x---", hat="o-x-o-x-o-x-o-x-")),
                        dict(drums=.98, bass=.95, pad=.8, bells=.4, piano=.3, strings=.2, voice=.3, guitar=.05,
                             brass=.1, organ=.1, marimba=.2, flute=.05), "octaves", "arp16", .4, (.5, 1.0), (.4, 1.0),
                        kit="electronic", sevenths=.3),
    "classical": Style((60, 140), 0.45, ((0, 3, 4, 0), (0, 1, 4, 0), (0, 5, 3, 4), (0, 4, 5, 2), (3, 4, 0, 0)),
                       (), dict(strings=.85, piano=.5, flute=.5, brass=.35, bells=.1, organ=.2, marimba=.05, voice=.2,
                                bass=.4, guitar=.1, drums=.0, pad=.05), "sustain", "arp", .5, (.15, .8), (.2, .7),
                       beats=3, p_solo=.25, solo=("piano", "guitar", "organ")),
    "folk": Style((80, 130), 0.35, ((0, 3, 0, 4), (0, 4, 0, 4), (0, 3, 4, 0), (5, 3, 0, 4)),
                  (_p(kick="x-----------", hat="o---o---o---", rim="----x---x---"),
                   _p(kick="x-----x-----", hat="o-o-o-o-o-o-")),
                  dict(guitar=.95, voice=.65, flute=.35, strings=.3, piano=.2, bass=.5, drums=.35, marimba=.1,
                       organ=.05, bells=.05, brass=.05, pad=.05), "roots", "arp", .45, (.2, .7), (.3, .7),
                  beats=3, p_solo=.2, solo=("guitar",)),
    "ambient": Style((55, 85), 0.5, ((0, 3), (0, 5), (3, 0, 5, 4)),
                     (_p(kick="x---------------", hat="--------o-------"),),
                     dict(pad=.95, bells=.6, strings=.45, piano=.4, flute=.25, voice=.2, marimba=.15, guitar=.2,
                          bass=.35, drums=.15, organ=.1, brass=.05), "sustain", "arp", .18, (.1, .5), (.05, .55),
                     sevenths=.5, p_solo=.15, solo=("piano", "bells"), kit="electronic", chord_bars=2),
    "funk": Style((90, 118), 0.6, ((0, 0, 0, 3), (0, 3, 0, 3), (1, 4, 1, 4)),
                  (_p(kick="x--x--x---x--x--", snare="----x--.-.--x--.", hat="xoxoxoxoxoxoxoxo"),
                   _p(kick="x-x---x--x--x---", snare="----x-.-.---x-..", hat="x-x-x-x-x-x-x-x-",
                      open_hat="-------x-------x")),
                  dict(drums=.98, bass=.98, guitar=.85, organ=.5, brass=.6, piano=.4, voice=.5, pad=.1, strings=.1,
                       flute=.05, bells=.02, marimba=.05), "synco", "stabs", .35, (.5, 1.0), (.5, 1.0),
                  lead_step=1, sevenths=.8),
    "hiphop": Style((75, 98), 0.7, ((0, 5), (0, 3, 5, 4), (0, 0, 5, 6)),
                    (_p(kick="x-----x---x-----", snare="----x-------x---", hat="x-x-x-x-x-x-x-x-"),
                     _p(kick="x------x-xx-----", clap="----x-------x---", hat="x-x-x-x-x-x-x-xx")),
                    dict(drums=1.0, bass=.9, piano=.5, voice=.6, pad=.4, strings=.3, bells=.25, organ=.2, brass=.2,
                         guitar=.2, flute=.1, marimba=.1), "hiphop", "block", .35, (.4, .9), (.3, .8),
                    sevenths=.5, swing=.25, kit="electronic"),
    "latin": Style((110, 150), 0.5, ((1, 4, 0, 0), (0, 3, 1, 4), (0, 5, 1, 4)),
                   (_p(kick="x--x----x--x----", rim="x--x--x---x-x---", hat="o-o-o-o-o-o-o-o-"),
                    _p(kick="x--xx--xx--xx--x", rim="--x--x---x--x---", hat="oooooooooooooooo")),
                   dict(drums=.9, bass=.9, guitar=.8, piano=.6, marimba=.35, flute=.4, brass=.4, voice=.5, strings=.15,
                        organ=.1, bells=.05, pad=.05), "tumbao", "bossa", .45, (.35, .85), (.4, .85),
                   sevenths=.7),
}


def bass_line(figure: str, chord: list[int], spb: int, rng: np.random.Generator) -> list[tuple[int, float, int]]:
    """(16th, duration in 16ths, pitch class) of one bar of bass."""
    root, third, fifth = chord[0], chord[1], chord[2]
    if figure == "roots8":
        return [(s, 1.6, root) for s in range(0, spb, 2)]
    if figure == "roots":
        return [(0, 6, root), (spb // 2 if spb == 16 else 8, 4, fifth if rng.uniform() < 0.5 else root)]
    if figure == "walking":
        return [(s, 3.6, pc) for s, pc in zip(range(0, spb, 4),
                                              (root, third, fifth, root + 11 if rng.uniform() < .5 else fifth + 2))]
    if figure == "octaves":
        return [(s, 1.5, root + 12 * (s % 4 == 2)) for s in range(0, spb, 2)]
    if figure == "synco":
        pat = [0, 3, 6, 8, 10, 13, 14] if rng.uniform() < 0.5 else [0, 2, 7, 8, 11, 14]
        return [(s, 1.2, root + (12 if s in (3, 13, 7) else 0)) for s in pat]
    if figure == "tumbao":
        return [(0, 3, root), (6, 2, fifth), (8, 3, root), (14, 2, fifth)]
    if figure == "hiphop":
        return [(0, 5, root), (7, 1.5, root), (10, 4, root if rng.uniform() < .5 else fifth)]
    return [(0, spb, root)]  # sustain


def comp_line(figure: str, n_notes: int, spb: int, rng: np.random.Generator) -> list[tuple[float, float, int]]:
    """(16th, duration in 16ths, chord-tone index or -1 for the whole chord) of one bar of accompaniment."""
    if figure == "strum":
        return [(s, 1.8, -1) for s in range(0, spb, 2) if s % 4 == 0 or rng.uniform() < 0.6]
    if figure == "block":
        return [(s, 3.5, -1) for s in range(0, spb, 4)] if rng.uniform() < 0.5 else [(0, 7, -1), (8, 7, -1)]
    if figure == "jazz":
        hits = sorted(rng.choice(np.arange(0, spb, 2), size=2, replace=False))
        return [(float(s) + 0.0, 2.5, -1) for s in hits]
    if figure == "stabs":
        return [(s, 0.8, -1) for s in (2, 6, 10, 14) if rng.uniform() < 0.8] or [(2, 0.8, -1)]
    if figure == "bossa":
        return [(s, 1.5, -1) for s in (0, 3, 6, 10, 12)]
    if figure in ("arp", "arp16"):
        every = 1 if figure == "arp16" else 2
        order = rng.choice([0, 1, 2])  # up, up-down, broken
        seq = [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 2, 1], [0, 2, 1, 3, 2, 4]][order]
        return [(s, every * 1.5, seq[i % len(seq)]) for i, s in enumerate(range(0, spb, every))]
    return [(0, spb - 0.2, -1)]  # sustain
