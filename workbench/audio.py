"""Audio front end: file loading (mono, 16 kHz, peak-normalised) and the log-mel `MelFrontend`.

The mel front end follows the released code of Meseguer-Brocal et al. (ICASSP 2024,
deezer/multi-view-ssl-benchmark): torchaudio ``MelSpectrogram(n_fft=1024, hop_length=512,
n_mels=128, mel_scale="slaney", normalized=True)`` (torchaudio's default ``norm=None``: triangles
of peak 1, not unit area) followed by
``AmplitudeToDB(top_db=100)``. Both use torchaudio's defaults ``power=2.0`` and
``stype="power"``: mel filters sum the power spectrum and dB = 10 log10(power), which is on the
same dB scale as the paper's "log-magnitude" (20 log10 |X| = 10 log10 |X|^2). We keep the
release's choice so that released checkpoints see the input they were trained on.

One departure by default: ``f_max=None`` means the Nyquist frequency. The release passes
f_max=11025 at 16 kHz, above Nyquist, so the top Slaney filters lie entirely outside the STFT's
frequency range and are all zero (11 of 128; docs/paper.md departure 6). ``f_max=11025`` reproduces it;
``MelFrontend.dead_filters`` counts those rows.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Iterable

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from workbench.config import AudioConfig


class AudioReadError(ValueError):
    """A file that cannot be decoded (or holds no samples); the message names file and reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read audio file {self.path}: {reason}")


@functools.lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    """One Resample module per rate pair: building its sinc kernel costs more than applying it
    (0.30 s -> 0.04 s for 1 s at 22.05 kHz), and ingestion resamples thousands of files."""
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def load_audio(path: str | os.PathLike, sample_rate: int = 16_000, max_seconds: float | None = None) -> np.ndarray:
    """Decode a file to float32 (S,): mono mix, resampled to ``sample_rate``, peak-normalised.

    ``max_seconds`` caps what is decoded (only the first ``max_seconds`` are read from disk, so
    an hour-long file costs what its first minutes cost). A silent file is returned as zeros
    (it is not an error here; the view sampler can reject silent segments).
    """
    import soundfile as sf  # here, not at the top: the training path (MelFrontend) runs where soundfile is absent

    if not os.path.isfile(path):
        raise AudioReadError(path, "no such file")
    try:
        info = sf.info(str(path))
        frames = -1 if max_seconds is None else int(np.ceil(max_seconds * info.samplerate))
        data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:  # LibsndfileError is a RuntimeError
        raise AudioReadError(path, str(err)) from None
    if data.shape[0] == 0:
        raise AudioReadError(path, "the file holds no samples")
    if not np.isfinite(data).all():
        raise AudioReadError(path, "the file holds non-finite samples")
    x = data.mean(axis=1)  # (S,) mono mix of the channels
    if sr != sample_rate:
        x = _resampler(int(sr), int(sample_rate))(torch.from_numpy(x)).numpy()
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 0:
        x = x / peak
    return np.ascontiguousarray(x, dtype=np.float32)


class MelFrontend(nn.Module):
    """Waveform (B, S) or (B, 1, S) -> log-mel in dB (B, 1, F, T), on the input's device.

    Each example's dB values are clipped at its own maximum minus ``top_db``. With the paper's
    defaults a 4 s clip at 16 kHz gives (B, 1, 128, 126).
    """

    def __init__(self, sample_rate: int = 16_000, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
                 f_min: float = 0.0, f_max: float | None = None, top_db: float | None = 100.0,
                 mel_norm: str | None = None):
        super().__init__()
        self.sample_rate = sample_rate
        self.f_max = float(sample_rate) / 2 if f_max is None else float(f_max)
        self.top_db = top_db
        with warnings.catch_warnings():
            # torchaudio warns about all-zero filters when f_max > Nyquist; `dead_filters` reports them.
            warnings.filterwarnings("ignore", message=".*all zero values.*")
            self.spec = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                f_min=f_min, f_max=self.f_max, power=2.0, normalized=True,
                mel_scale="slaney", norm=mel_norm)

    @classmethod
    def from_config(cls, audio: AudioConfig) -> "MelFrontend":
        return cls(sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
                   n_mels=audio.n_mels, f_min=audio.f_min, f_max=audio.f_max, top_db=audio.top_db,
                   mel_norm=audio.mel_norm)

    @property
    def filterbank(self) -> Tensor:
        """The mel filters, (n_fft // 2 + 1, n_mels)."""
        return self.spec.mel_scale.fb

    @property
    def dead_filters(self) -> int:
        """How many mel filters are all zero (11 with f_max=11025 at 16 kHz, 0 at Nyquist)."""
        return int((self.filterbank.abs().sum(dim=0) == 0).sum())

    def forward(self, x: Tensor) -> Tensor:
        return self.clip(self.decibels(x))

    def decibels(self, x: Tensor) -> Tensor:
        """Waveform (B, S) or (B, 1, S) -> log-mel in dB (B, 1, F, T) before the ``top_db`` clip."""
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"MelFrontend expects a waveform batch (B, S) or (B, 1, S), got {tuple(x.shape)}")
        if self.filterbank.device != x.device:
            self.to(x.device)
        # float32 even under the trainer's bf16 autocast: the mel matmul would otherwise run in bf16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            power = self.spec(x.float())  # (B, F, T)
            db = 10.0 * torch.log10(power.clamp_min(1e-10))  # AmplitudeToDB(stype="power"), ref 1, amin 1e-10
        return db.unsqueeze(1)  # (B, 1, F, T)

    def clip(self, db: Tensor) -> Tensor:
        """(B, 1, F, T) dB -> each example clipped at its own maximum minus ``top_db``."""
        if self.top_db is None:
            return db
        return torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.top_db)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, f_max={self.f_max}, top_db={self.top_db}, "
                f"dead_filters={self.dead_filters}")


class TrackMels:
    """Every track's log-mel computed once, views cut from it on the frame grid.

    A view that starts on a multiple of the hop is a run of the track's frames: frame j of the
    view is centred where frame k + j of the track is (k = start / hop), so cutting ``n_frames``
    frames and clipping them at ``top_db`` below their own maximum gives the view's log-mel
    without another STFT (`ViewPipeline` with ``views.crop="frames"``). Inside the view the
    values are the per-view path's, to float rounding; the first and last frame differ: their
    windows reach past the view's edges, which the per-view path fills with a reflection of the
    view and this path with the audio that is really there (tests/test_audio.py).

    ``tracks``: (store index, (S_i,) float32 waveform) pairs, read one at a time (a generator
    keeps one waveform in memory); the dB values are kept (F, sum T_i) on ``device``."""

    def __init__(self, frontend: MelFrontend, tracks: Iterable[tuple[int, np.ndarray]], n_frames: int,
                 device: torch.device | str = "cpu"):
        hop = frontend.spec.hop_length
        self.hop, self.n_frames, self.frontend = hop, int(n_frames), frontend
        parts, first, total = [], {}, 0
        for index, audio in tracks:
            db = frontend.decibels(torch.from_numpy(np.ascontiguousarray(audio))[None].to(device))[0, 0]  # (F, T_i)
            first[int(index)] = total
            parts.append(db)
            total += db.shape[-1]
        self.db = torch.cat(parts, dim=-1)  # (F, sum T_i)
        self.first = torch.full((max(first) + 1,), -1, dtype=torch.int64)  # store index -> first column; -1: absent
        self.first[list(first)] = torch.tensor(list(first.values()), dtype=torch.int64)

    def crop(self, track_idx: Tensor | np.ndarray, starts: Tensor | np.ndarray) -> list[Tensor]:
        """track_idx (B,), starts (B, V) in samples (multiples of the hop) -> V views (B, 1, F, T)."""
        starts = torch.as_tensor(starts)
        if bool((starts % self.hop != 0).any()):
            raise ValueError(f"TrackMels.crop: view starts must lie on the {self.hop}-sample frame grid")
        track_idx = torch.as_tensor(track_idx)
        first = self.first[track_idx.clamp(max=self.first.numel() - 1)]
        if bool((first < 0).any()) or bool((track_idx >= self.first.numel()).any()):
            raise KeyError(f"TrackMels.crop: tracks {track_idx.tolist()} include one whose log-mel was not computed")
        frames = first[:, None] + starts // self.hop  # (B, V)
        index = (frames[..., None] + torch.arange(self.n_frames)).to(self.db.device)  # (B, V, T)
        cut = self.db[:, index].permute(2, 1, 0, 3).unsqueeze(2)  # (V, B, 1, F, T)
        return [self.frontend.clip(view.contiguous()) for view in cut]
