"""Instrument timbres of the embedded corpus: physically inspired synthesis, vectorised in NumPy.

Each pitched instrument is a function ``render(midi, n, gate, vel, rng, p) -> (n,)`` that returns
one note of ``n`` samples, held for ``gate`` samples then released (``n - gate`` = `TAIL`), at
velocity ``vel`` in (0, 1]; ``p`` holds
the track's timbre parameters (drawn once per track by `timbre_params`, so a track keeps its
sound from section to section). Velocity also changes the timbre (FM index, filter cutoff,
pluck brightness) so that loud and quiet playing sound different even after peak normalisation.

Sources of the models: Karplus & Strong 1983 (plucked string, with Jaffe & Smith's 1983
damping), Chowning 1973 (FM bells and electric piano), subtractive "filtered saw" ensembles with
PolyBLEP band-limiting (Valimaki & Huovilainen 2007), additive drawbar organ, Klatt 1980
(glottal pulse through cascaded formant resonators), modal synthesis for mallets, and the
analogue drum-machine recipes (pitch-swept sine kick, noise plus tone snare, filtered-noise hats).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np
from scipy import signal

SR = 16_000  # the corpus sample rate; every function here is written for it
_TWO_PI = 2.0 * np.pi


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _t(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SR


def _adsr(n: int, attack: float, decay: float, sustain: float, release: float, gate: int) -> np.ndarray:
    """Piecewise envelope: linear attack, exponential decay to ``sustain``, release after ``gate`` samples."""
    t = _t(n)
    a = max(attack, 1e-3)
    env = np.where(t < a, t / a, sustain + (1.0 - sustain) * np.exp(-(t - a) / max(decay, 1e-3)))
    g = min(gate, n - 1)
    tg = t - t[g]
    env = np.where(np.arange(n) > g, env[g] * np.exp(-np.maximum(tg, 0) / max(release / 4.0, 1e-3)), env)
    return env


@lru_cache(maxsize=4096)
def _butter(order: int, edges: tuple[float, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Butterworth design, cached: cutoffs come rounded to 1/4 semitone, so designs repeat."""
    return signal.butter(order, [e / (SR / 2) for e in edges] if len(edges) > 1 else edges[0] / (SR / 2), kind)


def _q(fc: float) -> float:
    return float(2.0 ** (np.round(np.log2(fc) * 48) / 48))


def _lowpass(x: np.ndarray, fc: float, order: int = 2) -> np.ndarray:
    b, a = _butter(order, (_q(np.clip(fc, 40.0, 0.45 * SR)),), "low")
    return signal.lfilter(b, a, x)


def _bandpass(x: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
    b, a = _butter(order, (_q(lo), _q(min(hi, 0.47 * SR))), "band")
    return signal.lfilter(b, a, x)


def _highpass(x: np.ndarray, fc: float, order: int = 2) -> np.ndarray:
    b, a = _butter(order, (_q(min(fc, 0.45 * SR)),), "high")
    return signal.lfilter(b, a, x)


def _polyblep_saw(freq: np.ndarray | float, n: int, phase0: float = 0.0) -> np.ndarray:
    """Band-limited sawtooth (PolyBLEP) for a per-sample or constant frequency in Hz."""
    dt = np.broadcast_to(np.asarray(freq, dtype=np.float64) / SR, (n,))
    phase = (phase0 + np.cumsum(dt)) % 1.0
    y = 2.0 * phase - 1.0
    lo = phase < dt
    x = phase[lo] / dt[lo]
    y[lo] -= x + x - x * x - 1.0
    hi = phase > 1.0 - dt
    x = (phase[hi] - 1.0) / dt[hi]
    y[hi] -= x * x + x + x + 1.0
    return y


def _vibrato(f: float, n: int, depth: float, rate: float, delay: float = 0.15) -> np.ndarray:
    t = _t(n)
    ramp = np.clip((t - delay) / 0.3, 0.0, 1.0)
    return f * (1.0 + depth * ramp * np.sin(_TWO_PI * rate * t))


# --------------------------------------------------------------------------- pitched instruments

def karplus_strong(f: float, n: int, brightness: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong string: y[i] = x[i] + rho * (y[i-N] + y[i-N-1]) / 2, computed a period at a time.

    Each block of N samples depends only on the previous block, so the loop runs n / N times over
    vectorised blocks instead of n times over samples.
    """
    period = max(int(round(SR / f)), 2)
    # loss per period so that the string falls by 60 dB in ``decay`` seconds
    rho = 10.0 ** (-3.0 * period / (SR * max(decay, 0.05)))
    burst = rng.uniform(-1.0, 1.0, period)
    burst = _lowpass(burst, 600.0 + 7000.0 * brightness, 1)  # pick position / plectrum hardness
    y = np.zeros(n + period + 1)
    y[1:period + 1] = burst
    pos = period + 1
    while pos < n + 1:
        end = min(pos + period, n + period + 1)
        prev = y[pos - period:end - period]
        prev1 = y[pos - period - 1:end - period - 1]
        y[pos:end] = 0.5 * rho * (prev + prev1)
        pos = end
    return y[1:n + 1]


def pluck(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Acoustic/electric guitar: Karplus-Strong with a body resonance."""
    f = midi_hz(midi)
    y = karplus_strong(f, n, p["bright"] * (0.4 + 0.6 * vel), p["sustain"] * (1.2 - 0.3 * (midi - 50) / 30), rng)
    return y + 0.3 * _bandpass(y, 90.0, 260.0, 1)


def bass(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Bass: a plucked Karplus-Strong string (finger bass) or a filtered saw plus sub sine (synth bass)."""
    f = midi_hz(midi)
    if p["kind"] == "finger":
        y = karplus_strong(f, n, 0.15 + 0.25 * vel, 1.5, rng)
        y = _lowpass(y, 900.0 + 900.0 * vel, 2)
        env = _adsr(n, 0.004, 1.0, 1.0, 0.06, gate)
        return y * env
    t = _t(n)
    saw = _polyblep_saw(f, n)
    y = _lowpass(saw, p["cutoff"] * (0.6 + 0.8 * vel), 2) + 0.8 * np.sin(_TWO_PI * f * t)
    return y * _adsr(n, 0.005, 0.25, 0.6, 0.05, gate)


def epiano(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """FM electric piano (Chowning): 1:1 carrier/modulator with a decaying index plus a tine partial."""
    f = midi_hz(midi)
    t = _t(n)
    index = p["index"] * (0.4 + 1.2 * vel) * np.exp(-t / 0.4)
    y = np.sin(_TWO_PI * f * t + index * np.sin(_TWO_PI * f * t))
    if 14 * f < 0.45 * SR:
        y += 0.25 * vel * np.sin(_TWO_PI * 14 * f * t) * np.exp(-t / 0.03)
    decay = 1.6 * (1.0 - 0.5 * (midi - 48) / 40)
    return y * _adsr(n, 0.002, decay, 0.0, 0.15, gate)


def bells(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """FM bells (Chowning 1973): inharmonic ratio, index decaying with the amplitude."""
    f = midi_hz(midi)
    t = _t(n)
    env = np.exp(-t / p["decay"])
    index = (1.5 + 3.0 * vel) * env
    y = np.sin(_TWO_PI * f * t + index * np.sin(_TWO_PI * f * p["ratio"] * t))
    return y * env * np.minimum(t / 0.002, 1.0)


def _saw_ensemble(f: float, n: int, voices: int, detune: float, rng: np.random.Generator) -> np.ndarray:
    cents = np.linspace(-detune, detune, voices)
    vib = _vibrato(f, n, 0.003, 5.0 + rng.uniform(-0.5, 0.5))
    out = np.zeros(n)
    for c in cents:
        out += _polyblep_saw(vib * 2.0 ** (c / 1200.0), n, rng.uniform())
    return out / voices


def strings(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Bowed-string section: detuned saw ensemble, lowpass, slow bow attack."""
    f = midi_hz(midi)
    y = _lowpass(_saw_ensemble(f, n, 3, 9.0, rng), p["cutoff"] * (0.7 + 0.6 * vel), 2)
    return y * _adsr(n, p["attack"], 0.5, 0.85, 0.35, gate)


def brass(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Brass: saw with a pitch scoop and a filter envelope (a crossfade of a dark and a bright filter)."""
    f = midi_hz(midi)
    t = _t(n)
    fr = f * (1.0 - 0.03 * np.exp(-t / 0.03))
    saw = _polyblep_saw(_vibrato(f, n, 0.004, 5.5, 0.3) * fr / f, n)
    dark = _lowpass(saw, 2.0 * f + 300.0, 2)
    bright = _lowpass(saw, (3.0 + 6.0 * vel) * f + 1200.0, 2)
    fenv = np.exp(-t / 0.12) * 0.7 + 0.3 * vel
    y = dark * (1.0 - fenv) + bright * fenv
    return y * _adsr(n, 0.03, 0.2, 0.8, 0.08, gate)


def pad(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Synth pad: wide detuned saws, dark lowpass, slow attack and long release."""
    f = midi_hz(midi)
    y = _lowpass(_saw_ensemble(f, n, 4, 14.0, rng), p["cutoff"] * (0.8 + 0.4 * vel), 2)
    return y * _adsr(n, p["attack"], 1.0, 0.9, 0.6, gate)


def organ(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Drawbar organ (additive): sine partials at the drawbar footages, tremolo, key click."""
    f = midi_hz(midi)
    t = _t(n)
    ratios = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    keep = ratios * f < 0.45 * SR
    phase = _TWO_PI * f * t
    y = np.sum(p["drawbars"][keep, None] * np.sin(ratios[keep, None] * phase[None, :]), axis=0)
    y *= 1.0 + 0.15 * np.sin(_TWO_PI * p["leslie"] * t)
    y[:40] += rng.uniform(-0.3, 0.3, min(40, n))
    return y * _adsr(n, 0.005, 1.0, 1.0, 0.04, gate)


# Klatt-style vowel formants (Hz) for an adult male voice; a female voice scales them by 1.17.
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (390, 1990, 2550),
          "o": (570, 840, 2410), "u": (440, 1020, 2240)}


def voice(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Sung voice: Rosenberg glottal pulse train (vibrato, jitter, breath) through three formant resonators."""
    f = midi_hz(midi)
    freq = _vibrato(f, n, 0.012, 5.2, 0.2) * (1.0 + 0.002 * rng.standard_normal(n).cumsum() / np.sqrt(n))
    phase = np.cumsum(freq / SR) % 1.0
    # Rosenberg (1971) pulse: opening 40 % of the period, closing 16 %, closed the rest
    g = np.where(phase < 0.4, 0.5 * (1.0 - np.cos(np.pi * phase / 0.4)),
                 np.where(phase < 0.56, np.cos(np.pi * (phase - 0.4) / 0.32), 0.0))
    src = np.diff(g, prepend=0.0) * SR / f  # lip radiation: derivative
    src += p["breath"] * rng.standard_normal(n) * (0.3 + 0.7 * g)
    vowel = VOWELS[p["vowels"][int(rng.integers(len(p["vowels"])))]]
    y = np.zeros(n)
    for k, (formant, bw) in enumerate(zip(vowel, (80.0, 100.0, 140.0))):
        fc = min(formant * p["formant_scale"], 0.45 * SR)
        r = np.exp(-np.pi * bw / SR)
        a = [1.0, -2.0 * r * np.cos(_TWO_PI * fc / SR), r * r]
        y += (1.0, 0.5, 0.25)[k] * signal.lfilter([1.0 - r], a, src)
    return y * _adsr(n, 0.04, 0.5, 0.9, 0.12, gate)


def flute(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Flute: near-sine tone with weak harmonics, delayed vibrato and band-passed breath noise."""
    f = midi_hz(midi)
    freq = _vibrato(f, n, 0.008, 5.0, 0.25)
    phase = _TWO_PI * np.cumsum(freq / SR)
    y = np.sin(phase) + 0.2 * vel * np.sin(2 * phase) + 0.06 * np.sin(3 * phase)
    y += p["breath"] * _bandpass(rng.standard_normal(n), f * 0.8, f * 2.5, 1)
    return y * _adsr(n, 0.06, 0.4, 0.85, 0.08, gate)


def marimba(midi: int, n: int, gate: int, vel: float, rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    """Marimba (modal synthesis): bar modes at 1, 3.93 and 9.2 times f with fast decays, mallet click."""
    f = midi_hz(midi)
    t = _t(n)
    y = np.zeros(n)
    for ratio, amp, tau in ((1.0, 1.0, 0.45), (3.93, 0.35 * vel, 0.08), (9.2, 0.12 * vel, 0.03)):
        if ratio * f < 0.45 * SR:
            y += amp * np.sin(_TWO_PI * ratio * f * t) * np.exp(-t / (tau * (1.3 - (midi - 55) / 60)))
    y[:60] += 0.2 * vel * _bandpass(rng.standard_normal(60), 1500.0, 5000.0, 1)[:min(60, n)]
    return y


INSTRUMENTS: dict[str, Callable[..., np.ndarray]] = {
    "guitar": pluck, "bass": bass, "piano": epiano, "bells": bells, "strings": strings, "brass": brass,
    "pad": pad, "organ": organ, "voice": voice, "flute": flute, "marimba": marimba,
}
# Instruments whose notes can be cut short (sustained) vs ring out (percussive: a note's tail is kept).
PERCUSSIVE = {"guitar", "piano", "bells", "marimba"}
# Seconds rendered after the note's gate (release or natural ring).
TAIL = {"guitar": 0.8, "bass": 0.1, "piano": 0.5, "bells": 1.5, "strings": 0.35, "brass": 0.1, "pad": 0.6,
        "organ": 0.05, "voice": 0.12, "flute": 0.1, "marimba": 0.5}


def timbre_params(name: str, rng: np.random.Generator, brightness: float) -> dict[str, Any]:
    """The per-track sound of an instrument (drawn once; ``brightness`` in [0, 1] is the track's)."""
    b = brightness
    if name == "guitar":
        return {"bright": 0.3 + 0.6 * b * rng.uniform(0.7, 1.0), "sustain": rng.uniform(1.0, 3.0)}
    if name == "bass":
        return {"kind": rng.choice(["finger", "synth"]), "cutoff": 300.0 + 900.0 * b}
    if name == "piano":
        return {"index": rng.uniform(0.8, 2.0) * (0.6 + 0.8 * b)}
    if name == "bells":
        return {"ratio": rng.choice([3.5, 1.4, 2.76]), "decay": rng.uniform(0.8, 2.0)}
    if name in ("strings", "pad"):
        return {"cutoff": (900.0 if name == "pad" else 1500.0) + 3500.0 * b * rng.uniform(0.6, 1.0),
                "attack": rng.uniform(0.08, 0.25) if name == "strings" else rng.uniform(0.3, 0.8)}
    if name == "organ":
        bars = rng.choice([0.0, 0.3, 0.6, 1.0], size=7, p=[0.3, 0.3, 0.2, 0.2])
        bars[1] = 1.0
        bars[4:] *= 0.4 + b
        return {"drawbars": bars / bars.sum(), "leslie": rng.choice([0.8, 6.5])}
    if name == "voice":
        female = bool(rng.uniform() < 0.5)
        return {"female": female, "formant_scale": 1.17 if female else 1.0, "breath": rng.uniform(0.02, 0.12),
                "vowels": list(rng.choice(list(VOWELS), size=3, replace=False))}
    if name == "flute":
        return {"breath": rng.uniform(0.05, 0.2)}
    return {}


# --------------------------------------------------------------------------- drum kit

DRUM_NOTES = {"kick": 36, "snare": 38, "clap": 39, "hat": 42, "open_hat": 46, "ride": 51, "crash": 49, "rim": 37}


def drum_kit(rng: np.random.Generator, brightness: float, kind: str) -> dict[str, np.ndarray]:
    """One track's drum samples (float64 arrays) keyed like `DRUM_NOTES`; ``kind`` "acoustic" | "electronic"."""
    kit = {}
    t = _t(int(0.5 * SR))
    f0, f1 = (rng.uniform(120, 180), rng.uniform(45, 60)) if kind == "acoustic" else (rng.uniform(150, 250), 45.0)
    sweep = f1 + (f0 - f1) * np.exp(-t / rng.uniform(0.02, 0.05))
    tail = rng.uniform(0.12, 0.25) if kind == "acoustic" else rng.uniform(0.25, 0.45)
    kick = np.sin(_TWO_PI * np.cumsum(sweep) / SR) * np.exp(-t / tail)
    kick[:80] += 0.3 * rng.standard_normal(80) * np.exp(-t[:80] / 0.002)
    kit["kick"] = np.tanh(1.5 * kick)
    ts = t[: int(0.3 * SR)]
    tone = rng.uniform(170, 230)
    body = (np.sin(_TWO_PI * tone * ts) + 0.5 * np.sin(_TWO_PI * 1.7 * tone * ts)) * np.exp(-ts / 0.05)
    noise = (_bandpass(rng.standard_normal(len(ts)), 1200.0, 4000.0 + 3500.0 * brightness)
             * np.exp(-ts / rng.uniform(0.07, 0.15)))
    kit["snare"] = 0.5 * body + 1.2 * noise
    clap = np.zeros(len(ts))
    for k, d in enumerate((0.0, 0.011, 0.023)):
        i = int(d * SR)
        clap[i:] += np.exp(-ts[: len(ts) - i] / (0.008 if k < 2 else 0.09))
    kit["clap"] = 1.3 * _bandpass(rng.standard_normal(len(ts)), 900.0, 2500.0) * clap
    th = t[: int(0.4 * SR)]
    hiss = _highpass(rng.standard_normal(len(th)), 5000.0 + 1500.0 * brightness)
    kit["hat"] = 0.6 * hiss * np.exp(-th / rng.uniform(0.02, 0.05))
    kit["open_hat"] = 0.5 * hiss * np.exp(-th / 0.25)
    # ride and crash: inharmonic square-ish partials (the 808 cymbal recipe), high-passed
    partials = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * rng.uniform(0.95, 1.3)
    metal = np.sign(np.sin(_TWO_PI * partials[:, None] * th[None, :])).sum(0)
    kit["ride"] = 0.25 * _highpass(metal, 3000.0) * np.exp(-th / 0.3)
    tc = _t(int(1.2 * SR))
    kit["crash"] = 0.5 * _highpass(rng.standard_normal(len(tc)), 3000.0) * np.exp(-tc / 0.5)
    tr = t[: int(0.08 * SR)]
    kit["rim"] = 0.6 * np.sin(_TWO_PI * 1700 * tr) * np.exp(-tr / 0.01)
    return kit


# --------------------------------------------------------------------------- room

def room_impulse_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Synthetic room: a direct path, a few early reflections, then exponentially decaying noise.

    High frequencies die faster than low ones (air and wall absorption): the tail is a sum of a
    low-passed noise with the full decay and a raw noise with a third of it.
    """
    n = int(rt60 * SR)
    t = _t(n)
    tau = rt60 / 6.91  # -60 dB at rt60
    lo = _lowpass(rng.standard_normal(n), 2500.0, 1) * np.exp(-t / tau)
    hi = rng.standard_normal(n) * np.exp(-t / (tau / 3.0))
    ir = (lo + 0.3 * hi) * np.minimum(t / 0.01, 1.0)
    for d in rng.uniform(0.005, 0.04, 5):
        ir[int(d * SR)] += rng.uniform(0.2, 0.5)
    ir /= np.sqrt(np.sum(ir ** 2))
    return ir
