"""General MIDI SoundFonts: where they are, what they hold, and parts played through one.

Two SoundFonts, never mixed: the embedded corpus's pitched and drum parts are played from
FluidR3_GM (Frank Wen and Toby Smithe, MIT licence; Debian's ``fluid-soundfont-gm`` package,
which `make` unpacks into ``.tools/soundfonts/`` at the version and SHA-256 pinned in the
Makefile), the transfer set's from TimGM6mb (Tim Brechbill, GPL-2.0; inside the ``pretty_midi``
wheel). No sample is shared between the two (`sample_digests`, tests/test_synth.py).

`Player` keeps one TinySoundFont synthesizer with the SoundFont loaded once per process (a
148 MB SoundFont takes about 0.4 s to parse) and resets it before every render, so a clip never
depends on the clips played before it in the same process (tests/test_synth.py). A part is a
dict: ``channel`` (9: drums, bank 128), ``program``, ``bank`` (drums: the kit), ``volume`` and
``pan`` (MIDI 0-127), ``notes``: (onset s, midi pitch, velocity 1-127, duration s).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import tinysoundfont

from workbench.config import REPO_ROOT

CORPUS_SOUNDFONT = "FluidR3_GM.sf2"
SOUNDFONT_DIR = REPO_ROOT / ".tools" / "soundfonts"  # where `make` unpacks it (ignored by git)
SOUNDFONT_ENV = "WORKBENCH_SOUNDFONT"  # or a path the user gives
TRANSFER_SOUNDFONT = ("pretty_midi", "TimGM6mb.sf2")  # (package, file inside it)
AUDIBLE = 0.05  # a part is tagged only when its dry RMS is at least 5 % (-26 dB) of the dry mix's


def corpus_soundfont() -> Path:
    """FluidR3_GM.sf2: ``$WORKBENCH_SOUNDFONT`` when set, else the copy `make` unpacked. A missing
    file is a one-line error saying how to get it."""
    given = os.environ.get(SOUNDFONT_ENV)
    path = Path(given).expanduser() if given else SOUNDFONT_DIR / CORPUS_SOUNDFONT
    if not path.is_file():
        raise FileNotFoundError(f"the embedded corpus plays its instruments from {CORPUS_SOUNDFONT}, not found at "
                                f"{path}: run `make soundfont` (Debian's fluid-soundfont-gm package, MIT), set "
                                f"{SOUNDFONT_ENV}=/path/to/{CORPUS_SOUNDFONT}, or use corpus.renderer=synth")
    return path


def _chunks(data: bytes, start: int, end: int):
    """(id, body offset, size) of the RIFF chunks between ``start`` and ``end``."""
    pos = start
    while pos + 8 <= end:
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)


def sample_digests(path: str | Path) -> dict[str, str]:
    """{SHA-1 of a sample's 16-bit data: its name} for every sample of an .sf2 (the ``shdr``
    headers index the ``smpl`` chunk). Two SoundFonts share a sample when they share a digest."""
    data = Path(path).read_bytes()
    smpl, shdr = None, None
    for cid, body, size in _chunks(data, 12, len(data)):
        if cid != b"LIST":
            continue
        for sub, sbody, ssize in _chunks(data, body + 4, body + size):
            if sub == b"smpl":
                smpl = (sbody, ssize)
            elif sub == b"shdr":
                shdr = (sbody, ssize)
    if smpl is None or shdr is None:
        raise ValueError(f"{path}: not a SoundFont 2 file with raw samples (smpl and shdr chunks)")
    out = {}
    for k in range(shdr[1] // 46 - 1):  # the last header is the terminal "EOS"
        rec = data[shdr[0] + 46 * k: shdr[0] + 46 * (k + 1)]
        name = rec[:20].split(b"\0")[0].decode("latin-1")
        start, end = struct.unpack("<II", rec[20:28])
        out[hashlib.sha1(data[smpl[0] + 2 * start: smpl[0] + 2 * end]).hexdigest()] = name
    return out


class Player:
    """One SoundFont loaded once; `dry` plays parts into mono float32 at ``sample_rate``."""

    def __init__(self, path: str | Path, sample_rate: int = 16_000):
        self.sample_rate = sample_rate
        self.synth = tinysoundfont.Synth(samplerate=sample_rate, gain=-3)
        self.sfid = self.synth.sfload(str(path))

    def _reset(self, parts: list[dict]) -> None:
        """Silence every voice and set every channel a part uses from scratch (program, volume,
        pan, expression, sustain, pitch bend): nothing carries over from the last render."""
        s = self.synth
        s.sounds_off()  # a quick release, not silence: play it out and throw it away
        s.generate(self.sample_rate // 10)
        for p in parts:
            ch = p["channel"]
            drums = ch == 9
            s.program_select(ch, self.sfid, 128 if drums else p.get("bank", 0),
                             p.get("bank", 0) if drums else p["program"], drums)
            for cc, value in ((7, p["volume"]), (10, p["pan"]), (11, 127), (64, 0)):
                s.control_change(ch, cc, int(value))
            s.pitchbend(ch, 8192)

    def dry(self, parts: list[dict], seconds: float) -> np.ndarray:
        """``parts`` played together, no room: (round(seconds * sample_rate),) float32."""
        sr, s = self.sample_rate, self.synth
        self._reset(parts)
        events = []
        for p in parts:
            ch = p["channel"]
            for on, pitch, vel, dur in p["notes"]:
                events.append((int(on * sr), 1, ch, int(pitch), int(np.clip(vel, 1, 127))))
                events.append((int((on + max(dur, 0.03)) * sr), 0, ch, int(pitch), 0))
        events.sort(key=lambda e: (e[0], e[1]))
        total = int(round(seconds * sr))
        chunks, pos = [], 0
        for at, is_on, ch, pitch, vel in events:
            at = min(at, total)
            if at > pos:
                chunks.append(np.frombuffer(s.generate(at - pos), dtype=np.float32))
                pos = at
            if is_on:
                s.noteon(ch, pitch, vel)
            else:
                s.noteoff(ch, pitch)
        if total > pos:
            chunks.append(np.frombuffer(s.generate(total - pos), dtype=np.float32))
        s.sounds_off()
        return np.concatenate(chunks).reshape(-1, 2).mean(axis=1) if chunks else np.zeros(total, np.float32)


def audible(stems: list[np.ndarray], threshold: float) -> tuple[list[int], list[float]]:
    """Which stems are heard in their sum: the indices whose RMS is at least ``threshold`` times
    the sum's, and every stem's level relative to the sum in dB."""
    rms = [float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) for x in stems]
    mix_rms = float(np.sqrt(np.mean(np.square(np.sum(stems, axis=0), dtype=np.float64)))) + 1e-12
    keep = [i for i, r in enumerate(rms) if r >= threshold * mix_rms]
    return keep, [round(20 * float(np.log10(r / mix_rms + 1e-12)), 1) for r in rms]
