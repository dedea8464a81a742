"""``python -m workbench.bench synth [--tracks N] [--profile demo] [--no-corpus]``

Prints the embedded corpus's generation speed, for each renderer side by side (``sampled``: the
scores played from FluidR3_GM; ``synth``: from the physical models): the real-time factor of one
core (seconds of audio generated per second, tracks generated one after the other in this
process, every style in turn) and the wall time to build the profile's whole corpus (its own
renderer) with the process pool into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from workbench.config import announce, load_profile
from workbench.data.corpus import build_corpus
from workbench.data.synth import RENDERERS, STYLES, generate_track


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench synth", description=__doc__.splitlines()[2])
    parser.add_argument("--tracks", type=int, default=30, help="tracks for the per-core real-time factor")
    parser.add_argument("--profile", default="demo", help="profile whose corpus is timed")
    parser.add_argument("--workers", type=int, default=None, help="processes for the corpus build (default 2)")
    parser.add_argument("--no-corpus", action="store_true", help="skip the whole-corpus build")
    args = parser.parse_args(argv)


    cfg = load_profile(args.profile)
    announce(cfg, "bench synth")
    styles = list(STYLES)
    for renderer in RENDERERS:
        generate_track(0, style=styles[0], renderer=renderer)  # warm-up: imports, caches, the SoundFont
        audio_s = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.tracks):
            audio, _, _ = generate_track(1000 + i, style=styles[i % len(styles)], renderer=renderer)
            audio_s += len(audio) / 16_000
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"generation, 1 core, {renderer:7s}: {args.tracks} tracks, {audio_s:.0f} s of audio in {dt:.2f} s wall, "
              f"{cpu:.2f} s CPU -> real-time factor {audio_s / dt:.0f}x per core ({audio_s / cpu:.0f}x per CPU second)")

    if args.no_corpus:
        return
    c = cfg.corpus
    n = c.n_pool + c.n_train + c.n_valid + c.n_test
    workers = args.workers or min(2, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        store = build_corpus(c, root=Path(tmp) / "corpus", progress=False, workers=workers)
        dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        hours = store.lengths.sum() / store.sample_rate / 3600
    print(f"{args.profile} corpus ({c.renderer}): {n} tracks ({hours:.2f} h of audio) built in {dt:.1f} s wall on "
          f"{workers} processes -> {hours * 3600 / dt:.0f}x real time overall; "
          f"{cpu:.1f} CPU seconds in all, {cpu / workers:.1f} s on {workers} otherwise idle cores")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other processes share "
              "the CPU, so wall times are pessimistic; the CPU-second figures are not")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
