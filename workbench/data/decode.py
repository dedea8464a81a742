"""Decoding one listed file, in worker processes: checks, reasons, captured decoder output.

A file is refused with a reason that starts with one of `REASONS`: missing, empty, corrupt (a
container whose header is absent, a header-less file libsndfile would read as RAW noise, a
file decoded far shorter than its header announces), too short for one 4 s segment, or silent.
What the C decoders print (libmpg123) is captured per file instead of reaching the terminal.
`workbench.data.ingest` drives it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import soundfile as sf
import torch

from workbench.audio import load_audio
from workbench.workers import worker_init_die_with_parent

SEGMENT_SECONDS = 4.0  # one view segment (paper); a shorter file cannot give a view
REASONS = ("missing", "empty", "corrupt", "too short", "silent")  # first word of every report reason
TRUNCATED = 0.5  # decoded length below this share of the header's length: truncated, corrupt
# Magic bytes of the containers that always have a header (an MP3 may start with junk).
_MAGIC = {".wav": (b"RIFF", b"RF64", b"BW64"), ".au": (b".snd",), ".snd": (b".snd",),
          ".flac": (b"fLaC", b"ID3"), ".ogg": (b"OggS",), ".opus": (b"OggS",), ".aif": (b"FORM",),
          ".aiff": (b"FORM",)}


def reason_kind(reason: str) -> str:
    """The reason word of a report line (one of `REASONS`; 'other' if none), also after a note
    such as MTAT's ``known broken MTAT clip 35644; empty: ...``."""
    for part in str(reason).split("; "):
        for kind in REASONS:
            if part.startswith(kind):
                return kind
    return "other"


def _header_problem(path: str) -> str | None:
    """Why a file whose extension implies a header does not start with it (None: looks fine).

    Random bytes named ``x.au`` would otherwise be read by libsndfile as header-less RAW
    u-law and kept as 8 kHz noise."""
    magic = _MAGIC.get(os.path.splitext(path)[1].lower())
    if magic is None:
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(magic):
        return None
    return (f"no {os.path.splitext(path)[1]} header: starts with {head!r}, expected "
            f"{' or '.join(repr(m) for m in magic)}")


@contextlib.contextmanager
def _captured_stderr():
    """Send the C-level stderr (fd 2) to a temporary file; yields a list that receives its text.

    libmpg123 prints warnings ("Xing stream size off ...") straight to fd 2, which breaks the
    progress bar; they belong to the file's line in the report instead."""
    out: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (some embedded interpreters)
        yield out
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = " | ".join(line.strip() for line in tmp.read().decode("utf-8", "replace").splitlines()
                              if line.strip())
            if text:
                out.append(text[:500])


def _decode(job: tuple[int, str, int, float | None]) -> tuple[int, np.ndarray | None, str | None, str]:
    """Decode one file in a worker: ``(row, audio float32 (S,) or None, reason it was left out,
    what the decoder printed)``; every reason starts with one of `REASONS`."""
    row, path, sample_rate, max_seconds = job
    if not os.path.exists(path):
        return row, None, "missing: no such file", ""
    if os.path.getsize(path) == 0:
        return row, None, "empty: the file has 0 bytes", ""
    problem = _header_problem(path)
    if problem:
        return row, None, f"corrupt: {problem}", ""
    with _captured_stderr() as said:
        try:
            info = sf.info(path)
        except Exception:  # load_audio below says why, in the reason
            info = None
        if info is not None and info.format == "RAW":
            return row, None, (f"corrupt: no audio header (libsndfile would read the bytes as "
                               f"header-less RAW {info.subtype} at {info.samplerate} Hz)"), ""
        try:
            x = load_audio(path, sample_rate=sample_rate, max_seconds=max_seconds)
        except Exception as err:  # any decoder failure on one file must not stop a 25k-file ingestion
            x, reason = None, getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
            if "does not exist" in reason:  # libsndfile's words for bytes it cannot recognise
                reason = "not a decodable audio file (format not recognised by libsndfile)"
    noise = said[0] if said else ""
    if x is None:
        return row, None, f"corrupt: {reason}" + (f"; decoder said: {noise}" if noise else ""), noise
    return (row, *_check_decoded(x, info, sample_rate, max_seconds, noise), noise)


def _check_decoded(x: np.ndarray, info, sample_rate: int, max_seconds: float | None,
                   noise: str) -> tuple[np.ndarray | None, str | None]:
    """``(x, None)`` for a usable track, else ``(None, reason)``: truncated, too short, silent."""
    seconds = x.size / sample_rate
    if info is not None and info.frames > 0 and info.samplerate > 0:
        announced = info.frames / info.samplerate
        if max_seconds is not None:
            announced = min(announced, max_seconds)
        if seconds < TRUNCATED * announced:  # e.g. an MP3 cut short: its header knows the length
            said = f"; decoder said: {noise}" if noise else ""
            return None, (f"corrupt: truncated, decoded {seconds:.2f} s of the {announced:.2f} s "
                          f"its header announces{said}")
    if seconds < SEGMENT_SECONDS:
        return None, f"too short: {seconds:.2f} s < one {SEGMENT_SECONDS:g} s segment"
    if not np.any(np.abs(x) > 1e-6):  # load_audio peak-normalises, so only digital silence is all ~0
        return None, "silent: every sample is zero"
    return x, None


def _decode_chunk(jobs: list[tuple]) -> list[tuple]:
    return [_decode(j) for j in jobs]


def _worker_init() -> None:
    # One intra-op thread a worker: the workers are the parallelism, and a forked child must not
    # enter an OpenMP region that its parent's torch already started (libgomp is not fork-safe).
    # A worker orphaned by a killed parent exits instead of waiting on its queue forever.
    worker_init_die_with_parent()

    torch.set_num_threads(1)


def decoded_tracks(jobs: list[tuple], workers: int, chunk: int):
    """Yield decoded results in job order; at most ``4 * workers`` chunks in flight (bounded memory)."""
    if workers <= 1:  # in this process, one file at a time (a patched loader is seen here)
        for job in jobs:
            yield _decode(job)
        return
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    pending: collections.deque[Future] = collections.deque()
    it = iter(chunks)
    try:
        for c in it:
            pending.append(pool.submit(_decode_chunk, c))
            if len(pending) >= 4 * workers:
                break
        while pending:
            results = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_decode_chunk, nxt))
            yield from results
        pool.shutdown(wait=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- fingerprint of the audio copy
