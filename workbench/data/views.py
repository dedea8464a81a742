"""Multi-view sampling: V segments of one track per example, drawn online from an `AudioStore`.

Paper (Meseguer-Brocal et al., ICASSP 2024): the views are "two (or more) 4 s segments cut from
the same track, at least about 4 s apart". Here ``min_gap`` is the silence-free stretch between
the END of one view and the START of the next one in time (start_{j+1} - (start_j + L) >= gap),
so with the defaults two views' starts are at least 8 s apart and their audio never overlaps.

Placements are drawn uniformly among all valid ones: with L the segment length, G the gap and
R = S - V L - (V - 1) G the track's slack, a placement is a nondecreasing sequence
0 <= u_1 <= ... <= u_V <= R (start_k = u_k + (k - 1)(L + G)); those are in bijection with the
V-subsets of {0, ..., R + V - 1}, drawn exactly with Floyd's algorithm, vectorised over the
batch. The views' order is then shuffled per example, so "view 0" is not always the earlier one
(asymmetric methods, BYOL's predictor or DINO's teacher, see both directions).
With ``grid`` (the hop, when views are cut from each track's log-mel: ``views.crop="frames"``)
the same draw runs in units of ``grid`` samples: starts are multiples of it and consecutive
starts at least ceil((L + G) / grid) units apart, so the gap still holds.

`chunk_track` cuts a track into non-overlapping chunks for evaluation (paper: 4 s chunks,
embeddings mean-pooled over the track).
"""

from __future__ import annotations

import warnings
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench.config import RunConfig
from workbench.data.store import AudioStore, DeviceSamples


@dataclass
class ViewBatch:
    """views: V tensors (B, S) float32; track_idx (B,) int64 store indices; starts (B, V) samples."""

    views: list[Tensor]
    track_idx: Tensor
    starts: Tensor


class ViewSampler:
    """Draw batches of V views (each ``duration`` s, ``min_gap`` s apart) from tracks of a store.

    Tracks too short for V views and their gaps are left out with a warning. A batch holds
    distinct tracks when there are at least as many eligible tracks as examples. With
    ``reject_silence``, an example with a view whose RMS is below ``silence_db`` dBFS (tracks are
    peak-normalised in the store, so relative to the track's peak) gets new
    placements (same track) up to ``max_redraws`` times. Reproducible from ``seed``;
    `state_dict` / `load_state_dict` resume the exact sequence of batches.

    Distributed (``rank``, ``world``): every rank holds the same ``seed``, so every rank draws
    the same GLOBAL batch (tracks and placements) and gathers only its slice of rows
    ``[rank B/W, (rank + 1) B/W)``; no track appears on two ranks in one step while the pool
    has at least B tracks. Silence redraws, which only the owning rank can see, use a second
    generator seeded per rank, so they never desynchronise the shared one.
    """

    def __init__(self, store: AudioStore, indices: np.ndarray | list[int], n_views: int = 2, duration: float = 4.0,
                 min_gap: float = 4.0, reject_silence: bool = True, silence_db: float = -50.0, seed: int = 0,
                 max_redraws: int = 5, rank: int = 0, world: int = 1, grid: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"ViewSampler: rank {rank} outside a world of {world} processes")
        if n_views < 2:
            raise ValueError(f"ViewSampler: n_views must be at least 2 (multi-view SSL), got {n_views}")
        if not duration > 0:
            raise ValueError(f"ViewSampler: duration must be positive, got {duration} s")
        if not min_gap >= 0:
            raise ValueError(f"ViewSampler: min_gap must be >= 0, got {min_gap} s")
        if int(grid) < 1:
            raise ValueError(f"ViewSampler: grid must be a positive number of samples, got {grid}")
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            raise ValueError("ViewSampler: no track indices given")
        if indices.min() < 0 or indices.max() >= len(store):
            raise IndexError(f"ViewSampler: track indices must lie in [0, {len(store)}) for {store.root}")
        self.store = store
        self.n_views = int(n_views)
        self.duration = float(duration)
        self.min_gap = float(min_gap)
        self.reject_silence = bool(reject_silence)
        self.silence_db = float(silence_db)
        self.max_redraws = int(max_redraws)
        self.seed = seed
        sr = store.sample_rate
        self.segment_samples = int(round(duration * sr))
        self.gap_samples = int(round(min_gap * sr))
        # starts on multiples of ``grid`` samples (the hop, for views cut from a track's log-mel);
        # consecutive views' starts at least ``pitch`` grid units apart, so the gap is kept
        self.grid = int(grid)
        self.pitch = -(-(self.segment_samples + self.gap_samples) // self.grid)
        self.span_samples = (self.n_views - 1) * self.pitch * self.grid + self.segment_samples
        lengths = store.lengths[indices]
        fits = lengths >= self.span_samples
        if not fits.any():
            raise ValueError(
                f"ViewSampler: no track fits {self.n_views} views of {self.duration} s with a {self.min_gap} s "
                f"gap ({self.span_samples / sr:.1f} s needed); the longest of the {indices.size} tracks is "
                f"{lengths.max() / sr:.1f} s. Lower n_views, duration or min_gap.")
        if not fits.all():
            warnings.warn(f"ViewSampler: {int((~fits).sum())} of {indices.size} tracks are shorter than the "
                          f"{self.span_samples / sr:.1f} s that {self.n_views} views of {self.duration} s with a "
                          f"{self.min_gap} s gap need; they are left out", stacklevel=2)
        self.indices = indices[fits]
        self.rank, self.world = int(rank), int(world)
        self.rng = np.random.default_rng(seed)  # the same on every rank: the global batch
        self.redraw_rng = np.random.default_rng([seed, rank])  # this rank's silence redraws

    @classmethod
    def from_config(cls, store: AudioStore, indices: np.ndarray | list[int], cfg: RunConfig,
                    seed: int | None = None, rank: int = 0, world: int = 1) -> "ViewSampler":
        """A sampler with ``cfg.views`` and ``cfg.audio``; ``seed`` defaults to ``cfg.train.seed``."""
        return cls(store, indices, n_views=cfg.views.n_views, duration=cfg.audio.segment_seconds,
                   min_gap=cfg.views.min_gap, reject_silence=cfg.views.reject_silence,
                   silence_db=cfg.views.silence_db, seed=cfg.train.seed if seed is None else seed,
                   rank=rank, world=world, grid=cfg.audio.hop_length if cfg.views.crop == "frames" else 1)

    def _tracks(self, batch_size: int) -> np.ndarray:
        n = self.indices.size
        if batch_size <= n:
            return self.indices[self.rng.choice(n, size=batch_size, replace=False)]
        # More examples than tracks: whole permutations back to back, so every track appears
        # ceil or floor of B / n times (duplicates are false negatives for contrastive losses).
        reps = -(-batch_size // n)
        order = np.concatenate([self.rng.permutation(n) for _ in range(reps)])[:batch_size]
        return self.indices[order]

    def _placements(self, track_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Starts (B, V) in samples, uniform over valid placements on the grid, views in shuffled order."""
        b, v = track_idx.size, self.n_views
        slack = (self.store.lengths[track_idx] - self.span_samples) // self.grid  # R >= 0 grid units, (B,)
        pool = slack + v  # draw a V-subset of {0, ..., R + V - 1} per row (Floyd's algorithm)
        chosen = np.empty((b, v), dtype=np.int64)
        for k in range(v):
            j = pool - v + k  # (B,)
            t = rng.integers(0, j + 1)
            taken = (chosen[:, :k] == t[:, None]).any(axis=1)
            chosen[:, k] = np.where(taken, j, t)
        chosen.sort(axis=1)
        step = np.arange(v, dtype=np.int64)
        starts = (chosen - step + step * self.pitch) * self.grid
        return rng.permuted(starts, axis=1)

    def _gather(self, track_idx: np.ndarray, starts: np.ndarray, out: np.ndarray | None = None,
                executor: Executor | None = None, workers: int = 1,
                on: DeviceSamples | None = None) -> tuple[np.ndarray | Tensor, np.ndarray]:
        """track_idx (B,), starts (B, V) -> audio (V, B, S), view-major so each view is contiguous,
        and silent (B,), True where a view is below ``silence_db`` (all False without rejection).

        ``out`` (V, B, S) float32 receives the audio; with an ``executor``, ``workers`` blocks of
        rows are gathered in its threads (the same values in the same places: only the copying
        is shared out; NumPy releases the GIL while it copies). ``on``: gather on that device
        instead (a tensor; the silence flags come back to the host, B booleans)."""
        b, v = starts.shape
        if on is not None:
            audio = torch.stack([on.segments(track_idx, starts[:, k], self.segment_samples) for k in range(v)])
            if not self.reject_silence:
                return audio, np.zeros(b, dtype=bool)
            rms = audio.square().mean(dim=-1).sqrt()  # (V, B)
            return audio, (20 * rms.clamp_min(1e-12).log10() < self.silence_db).any(dim=0).cpu().numpy()
        if out is None:
            out = np.empty((v, b, self.segment_samples), dtype=np.float32)

        def rows(block: slice) -> np.ndarray:
            for k in range(v):
                self.store.segments(track_idx[block], starts[block, k], self.segment_samples, out=out[k, block])
            return self._silent(out[:, block]) if self.reject_silence else np.zeros(block.stop - block.start, bool)

        blocks = [slice(lo, hi) for lo, hi in _blocks(b, workers if executor is not None else 1)]
        silent = map(rows, blocks) if len(blocks) == 1 else executor.map(rows, blocks)
        return out, np.concatenate(list(silent))  # list(): re-raises a worker's exception here

    def _silent(self, audio: np.ndarray) -> np.ndarray:
        """(V, B, S) -> (B,) True where a view's RMS is below ``silence_db`` dBFS."""
        rms = np.sqrt(np.einsum("vbs,vbs->vb", audio, audio) / audio.shape[-1])  # float32, no (V, B, S) temporary
        return (20 * np.log10(np.maximum(rms, 1e-12)) < self.silence_db).any(axis=0)

    def sample(self, batch_size: int, executor: Executor | None = None, workers: int = 1,
               pin: bool = False, on: DeviceSamples | None = None) -> ViewBatch:
        """This rank's rows of a global batch of ``batch_size`` examples (all of it when world is 1).

        ``executor`` (threads) gathers ``workers`` blocks of rows at once; ``pin`` puts the views
        in page-locked memory, for ``.to(cuda, non_blocking=True)``; ``on`` gathers them on the
        device that holds the store's samples. None of them changes a value or the state of a
        generator."""
        if batch_size < 1 or batch_size % self.world:
            raise ValueError(f"ViewSampler.sample: batch_size must be a positive multiple of the {self.world} "
                             f"processes, got {batch_size}")
        track_idx = self._tracks(batch_size)
        starts = self._placements(track_idx, self.rng)
        local = slice(self.rank * batch_size // self.world, (self.rank + 1) * batch_size // self.world)
        track_idx, starts = track_idx[local], starts[local]
        if on is None:
            buffer = torch.empty((self.n_views, track_idx.size, self.segment_samples), dtype=torch.float32,
                                 pin_memory=pin)
            audio, silent = self._gather(track_idx, starts, buffer.numpy(), executor, workers)  # (V, B, S), (B,)
        else:
            audio, silent = self._gather(track_idx, starts, on=on)
        for _ in range(self.max_redraws if self.reject_silence else 0):
            bad = np.flatnonzero(silent)
            if bad.size == 0:
                break
            starts[bad] = self._placements(track_idx[bad], self.redraw_rng)
            rows = bad if on is None else torch.from_numpy(bad).to(on.device)
            audio[:, rows], silent_again = self._gather(track_idx[bad], starts[bad], on=on)
            silent = np.zeros_like(silent)
            silent[bad] = silent_again
        views = list((buffer if on is None else audio).unbind(0))
        return ViewBatch(views=views, track_idx=torch.from_numpy(track_idx), starts=torch.from_numpy(starts))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "redraw_rng": self.redraw_rng.bit_generator.state,
                "n_tracks": int(self.indices.size),
                "segment_samples": self.segment_samples, "gap_samples": self.gap_samples, "grid": self.grid}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = (int(self.indices.size), self.segment_samples, self.gap_samples, self.grid)
        theirs = (state["n_tracks"], state["segment_samples"], state["gap_samples"], state.get("grid", 1))
        if mine != theirs:
            raise ValueError(f"ViewSampler.load_state_dict: state of a sampler with (tracks, segment, gap, grid) "
                             f"= {theirs}, this one has {mine}")
        self.rng.bit_generator.state = state["rng"]
        self.redraw_rng.bit_generator.state = state["redraw_rng"]

    def __repr__(self) -> str:
        return (f"ViewSampler({self.indices.size} tracks, n_views={self.n_views}, duration={self.duration} s, "
                f"min_gap={self.min_gap} s, reject_silence={self.reject_silence})")


def _blocks(n: int, parts: int, min_rows: int = 16) -> list[tuple[int, int]]:
    """[lo, hi) row ranges splitting n rows into at most ``parts`` blocks of at least ``min_rows``."""
    parts = max(1, min(parts, n // min_rows))
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def chunk_track(audio: np.ndarray | Tensor, chunk_samples: int, last: str = "drop") -> np.ndarray | Tensor:
    """Cut a track (S,) into non-overlapping chunks (C, chunk_samples), same type as the input.

    ``last="drop"`` drops a final partial chunk, ``"pad"`` zero-pads it. A track shorter than
    one chunk gives one zero-padded chunk either way, so every track has an embedding.
    """
    if last not in ("drop", "pad"):
        raise ValueError(f"chunk_track: last must be 'drop' or 'pad', got {last!r}")
    if audio.ndim != 1:
        raise ValueError(f"chunk_track expects one track (S,), got shape {tuple(audio.shape)}")
    if chunk_samples < 1:
        raise ValueError(f"chunk_track: chunk_samples must be >= 1, got {chunk_samples}")
    n = audio.shape[0]
    full = n // chunk_samples
    count = full + 1 if (last == "pad" and n % chunk_samples) or full == 0 else full
    total = count * chunk_samples
    if isinstance(audio, Tensor):
        x = torch.nn.functional.pad(audio[:total], (0, max(0, total - n)))
    else:
        x = np.pad(np.asarray(audio)[:total], (0, max(0, total - n)))
    return x.reshape(count, chunk_samples)


def random_starts(lengths: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn start (int64) per track of ``lengths`` (N,) for a segment of
    ``length`` samples, in [0, max(track length - length, 0)]: one random draw each."""
    lengths = np.asarray(lengths)
    return (rng.random(len(lengths)) * (np.maximum(lengths - length, 0) + 1)).astype(np.int64)


def gather_segments(store: AudioStore, track_idx: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(B,) store indices and starts -> float32 (B, length); a track shorter than ``length`` is
    zero-padded (its start is 0)."""
    lengths = np.asarray(store.lengths)[track_idx]
    full = lengths >= starts + length
    out = np.zeros((len(track_idx), length), np.float32)
    if full.any():
        out[full] = store.segments(track_idx[full], starts[full], length)
    for j in np.flatnonzero(~full):
        a = store.audio(int(track_idx[j]))[starts[j]:starts[j] + length]
        out[j, :len(a)] = a
    return out
