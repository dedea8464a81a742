"""Batched waveform augmentations (B, S) and the base class of every augmentation.

Every augmentation is an ``nn.Module`` whose ``forward(x, generator=None)`` takes a waveform
batch ``(B, S)`` or a mel batch ``(B, 1, F, T)`` and returns the same shape, device and dtype.
Each example is augmented with probability ``p`` and with its own parameters drawn from
``generator`` (a ``torch.Generator``; ``None`` = torch's global RNG), so a seeded generator
reproduces a batch exactly. There is no Python loop over examples: parameters are tensors of
shape (B, ...), filters are per-example responses in the FFT domain, shifts are gathers.

Parameters are drawn on the generator's device and moved to the batch's: pass a generator on
the batch's device (``torch.Generator(device="cuda")``) to keep large draws (noise) on the GPU.

Here: the base class `Augmentation`, its random-draw helpers and the waveform transforms (gain,
polarity, coloured noise, time shift, delay, batch mixing, synthetic reverb, phase-vocoder pitch
shift); the FFT-domain filters are in `workbench.augment_filters`. The spectrogram augmentations
and the named chains live in `workbench.augment`, which re-exports every public name of both.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["Generator", "Augmentation", "Gain", "PolarityInversion", "Noise", "TimeShift", "Delay", "MixBatch",
           "Reverb", "PitchShift"]

Generator = torch.Generator | None


# --------------------------------------------------------------------------- random draws
def _draw(fn: Callable, shape: tuple[int, ...], generator: Generator, like: Tensor) -> Tensor:
    """``fn(shape)`` drawn on the generator's device (so a seed reproduces), moved to ``like``'s."""
    device = generator.device if generator is not None else like.device
    return fn(shape, generator=generator, device=device).to(like.device)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: Generator, like: Tensor) -> Tensor:
    return low + (high - low) * _draw(torch.rand, shape, generator, like)


def _partner(batch: int, generator: Generator, like: Tensor) -> Tensor:
    """A random derangement of the batch (no example is its own partner): a cycle through a permutation."""
    device = generator.device if generator is not None else like.device
    order = torch.randperm(batch, generator=generator, device=device).to(like.device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


def _rms(x: Tensor) -> Tensor:
    """(B, S) -> (B, 1) root mean square."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True) / math.sqrt(x.shape[-1]) + 1e-12


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


# --------------------------------------------------------------------------- base class
class Augmentation(nn.Module):
    """Applies ``transform`` to each example with probability ``p``.

    Subclasses implement ``transform(x, generator)`` on a float batch (all examples, drawing
    their own per-example parameters). With ``subset = True`` only the selected examples are
    computed (worth it for costly transforms; one host sync on GPU); otherwise the whole batch
    is transformed and the unselected examples are taken back with ``torch.where``.
    """

    ndim = 2  # (B, S); spectrogram augmentations: 4, (B, 1, F, T)
    subset = True

    def __init__(self, p: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        raise NotImplementedError

    def _run(self, x: Tensor, generator: Generator) -> Tensor:
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # FFTs want fp32
        return self.transform(work, generator).to(x.dtype)

    def forward(self, x: Tensor, generator: Generator = None) -> Tensor:
        layout = "(B, S)" if self.ndim == 2 else "(B, 1, F, T)"
        if x.dim() != self.ndim or (self.ndim == 4 and x.shape[1] != 1):
            raise ValueError(f"{type(self).__name__} expects {layout}, got {tuple(x.shape)}")
        if self.p == 0.0 or x.shape[0] == 0:
            return x
        if self.p == 1.0:
            return self._run(x, generator)
        chosen = _draw(torch.rand, (x.shape[0],), generator, x) < self.p
        if not self.subset:
            return torch.where(chosen.view(-1, *[1] * (x.dim() - 1)), self._run(x, generator), x)
        idx = chosen.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        out = x.clone()
        out[idx] = self._run(x[idx], generator)
        return out

    def extra_repr(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k != "training"]
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)


# --------------------------------------------------------------------------- waveform (B, S)
class Gain(Augmentation):
    """Multiply by a gain drawn uniformly in dB."""

    subset = False

    def __init__(self, min_db: float = -6.0, max_db: float = 6.0, p: float = 1.0) -> None:
        super().__init__(p)
        self.min_db, self.max_db = min_db, max_db

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        db = _uniform((x.shape[0], 1), self.min_db, self.max_db, generator, x)
        return x * torch.pow(10.0, db / 20.0)


class PolarityInversion(Augmentation):
    """Flip the sign of the waveform."""

    subset = False

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        return -x


class Noise(Augmentation):
    """Add noise at a per-example SNR (dB, relative to the example's RMS).

    ``color``: "white" (flat), "pink" (1/f power), "brown" (1/f^2) or a float exponent.
    Coloured noise is white noise shaped in the FFT domain.
    """

    COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}

    def __init__(self, min_snr_db: float = 10.0, max_snr_db: float = 40.0, color: str | float = "white",
                 p: float = 1.0) -> None:
        super().__init__(p)
        if isinstance(color, str) and color not in self.COLORS:
            raise ValueError(f"unknown noise color {color!r}; expected one of {sorted(self.COLORS)} or a float")
        self.min_snr_db, self.max_snr_db, self.color = min_snr_db, max_snr_db, color

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        noise = _draw(torch.randn, tuple(x.shape), generator, x).to(x.dtype)
        decay = self.COLORS.get(self.color, self.color) if isinstance(self.color, str) else float(self.color)
        if decay != 0.0:
            spectrum = torch.fft.rfft(noise)
            f = torch.arange(spectrum.shape[-1], device=x.device, dtype=x.dtype).clamp(min=1.0)
            noise = torch.fft.irfft(spectrum * f.pow(-decay / 2.0), n=x.shape[-1])
        snr = _uniform((x.shape[0], 1), self.min_snr_db, self.max_snr_db, generator, x)
        return torch.addcmul(x, noise, _rms(x) / _rms(noise) * torch.pow(10.0, -snr / 20.0))


def _shift(x: Tensor, shift: Tensor, circular: bool) -> Tensor:
    """Delay each row of x (B, S) by shift (B,) samples (negative = advance), by one gather."""
    s = x.shape[-1]
    source = torch.arange(s, device=x.device) - shift.view(-1, 1).long()
    out = torch.gather(x, 1, source % s)
    if circular:
        return out
    return out * ((source >= 0) & (source < s))


class TimeShift(Augmentation):
    """Shift each example by up to ``max_seconds`` either way, circularly or filling with zeros."""

    subset = False

    def __init__(self, sample_rate: int, max_seconds: float = 0.25, circular: bool = True, p: float = 1.0) -> None:
        super().__init__(p)
        self.sample_rate, self.max_seconds, self.circular = sample_rate, max_seconds, circular

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        limit = int(self.max_seconds * self.sample_rate)
        shift = torch.floor(_uniform((x.shape[0],), -limit, limit + 1, generator, x)).clamp(max=limit)
        return _shift(x, shift, self.circular)


class Delay(Augmentation):
    """CLMR's echo: ``(x + volume * x delayed) / 2`` with a delay of 200, 250, ..., 450 ms
    (torchaudio-augmentations Delay defaults; its halving kept as is)."""

    def __init__(self, sample_rate: int, min_ms: int = 200, max_ms: int = 500, step_ms: int = 50,
                 volume: float = 0.5, p: float = 1.0) -> None:
        super().__init__(p)
        self.sample_rate, self.min_ms, self.max_ms, self.step_ms, self.volume = (sample_rate, min_ms, max_ms,
                                                                                 step_ms, volume)

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        n_choices = len(range(self.min_ms, self.max_ms, self.step_ms))
        k = torch.floor(_uniform((x.shape[0],), 0, n_choices, generator, x)).clamp(max=n_choices - 1)
        delay = ((self.min_ms + k * self.step_ms) * self.sample_rate / 1000).floor()
        return (x + self.volume * _shift(x, delay, circular=False)) / 2


class MixBatch(Augmentation):
    """Mix in another track of the batch (a random derangement) ``min_db``..``max_db`` below
    the example's own RMS."""

    subset = False  # the partners come from the whole batch

    def __init__(self, min_db: float = -20.0, max_db: float = -10.0, p: float = 1.0) -> None:
        super().__init__(p)
        self.min_db, self.max_db = min_db, max_db

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        if x.shape[0] < 2:
            return x
        other = x[_partner(x.shape[0], generator, x)]
        level = torch.pow(10.0, _uniform((x.shape[0], 1), self.min_db, self.max_db, generator, x) / 20.0)
        return x + other * (_rms(x) / _rms(other) * level)


class Reverb(Augmentation):
    """Convolve with a synthetic room: exponentially decaying white noise, RT60 uniform in
    seconds (60 dB decay), by FFT; the wet part is scaled to the dry RMS and mixed in with a
    uniform ``wet`` share. No frequency-dependent damping, unlike a real room or sox's reverb."""

    def __init__(self, sample_rate: int, min_rt60: float = 0.2, max_rt60: float = 1.0, min_wet: float = 0.1,
                 max_wet: float = 0.5, p: float = 1.0) -> None:
        super().__init__(p)
        self.sample_rate, self.min_rt60, self.max_rt60 = sample_rate, min_rt60, max_rt60
        self.min_wet, self.max_wet = min_wet, max_wet

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        b, s = x.shape
        length = max(1, int(self.max_rt60 * self.sample_rate))
        rt60 = _uniform((b, 1), self.min_rt60, self.max_rt60, generator, x)
        t = torch.arange(length, device=x.device, dtype=x.dtype) / self.sample_rate
        ir = _draw(torch.randn, (b, length), generator, x).to(x.dtype) * torch.exp(-math.log(1000.0) * t / rt60)
        ir[:, 0] = ir[:, 0].abs() + 1.0  # a direct path
        n = _fast_length(s + length - 1)
        wet = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(ir, n=n), n=n)[:, :s]
        share = _uniform((b, 1), self.min_wet, self.max_wet, generator, x)
        return (1 - share) * x + share * wet * (_rms(x) / _rms(wet))


class PitchShift(Augmentation):
    """Shift pitch by a uniform number of semitones, keeping the duration: an STFT phase vocoder.

    Method: STFT (2048-point Hann, hop 512); each frame's spectrum is stretched along frequency
    by r = 2^(semitones / 12) (magnitudes linearly interpolated at bin k / r), instantaneous
    frequencies (from the phase advance between frames) are multiplied by r and the phases are
    re-integrated over frames; inverse STFT to the original length. Every example has its own r
    with the same shapes, so the batch stays one tensor. Quality: clean on steady tones, the
    usual phase-vocoder "phasiness" and softened transients on drums, formants move with the
    pitch, content shifted above Nyquist is dropped. Good enough for augmentation; not a
    production pitch shifter (CLMR uses sox's WSOLA-based ``pitch``).
    """

    def __init__(self, sample_rate: int, min_semitones: float = -7.0, max_semitones: float = 7.0,
                 n_fft: int = 2048, p: float = 1.0) -> None:
        super().__init__(p)
        self.sample_rate, self.min_semitones, self.max_semitones, self.n_fft = (sample_rate, min_semitones,
                                                                                max_semitones, n_fft)

    def transform(self, x: Tensor, generator: Generator) -> Tensor:
        b, s = x.shape
        hop = self.n_fft // 4
        window = torch.hann_window(self.n_fft, device=x.device, dtype=x.dtype)
        spec = torch.stft(x, self.n_fft, hop, window=window, return_complex=True)  # (B, K, T)
        k_bins, frames = spec.shape[1], spec.shape[2]
        ratio = torch.pow(2.0, _uniform((b, 1, 1), self.min_semitones, self.max_semitones, generator, x) / 12)
        magnitude, phase = spec.abs(), spec.angle()
        expected = 2 * math.pi * hop / self.n_fft * torch.arange(k_bins, device=x.device, dtype=x.dtype).view(-1, 1)
        advance = torch.diff(phase, dim=-1, prepend=phase[..., :1]) - expected
        advance = expected + torch.remainder(advance + math.pi, 2 * math.pi) - math.pi  # rad / hop
        source = torch.arange(k_bins, device=x.device, dtype=x.dtype).view(1, -1, 1) / ratio  # (B, K, 1)
        low = source.floor().clamp(max=k_bins - 1)
        frac = source - low
        valid = source <= k_bins - 1
        i0 = low.long().expand(b, k_bins, frames)
        i1 = (low + 1).clamp(max=k_bins - 1).long().expand(b, k_bins, frames)

        def interp(v: Tensor) -> Tensor:
            return torch.lerp(v.gather(1, i0), v.gather(1, i1), frac) * valid

        new_advance = torch.remainder(interp(advance) * ratio + math.pi, 2 * math.pi) - math.pi
        new_phase = phase.gather(1, i0)[..., :1] + torch.cumsum(new_advance[..., 1:], dim=-1)
        new_phase = torch.cat([phase.gather(1, i0)[..., :1], new_phase], dim=-1)
        shifted = torch.polar(interp(magnitude), new_phase)
        return torch.istft(shifted, self.n_fft, hop, window=window, length=s)
