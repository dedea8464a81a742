"""FFT-domain filters of a waveform batch (B, S): low-pass, high-pass, band-pass, high+low and a
random EQ, each a zero-phase per-example magnitude response (Butterworth-shaped edges, log-spaced
peaking bands). Built on `workbench.augment_wave.Augmentation`; re-exported by `workbench.augment`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from workbench.augment_wave import Augmentation, Generator, _draw, _fast_length, _uniform

__all__ = ["LowPass", "HighPass", "BandPass", "HighLowPass", "RandomEQ"]


class _FFTFilter(Augmentation):
    """Zero-phase filtering by a per-example magnitude response in the FFT domain.

    The signal is zero-padded by 50 ms before the FFT so the (short) impulse response does not
    wrap around. Subclasses give ``response(f (n,), generator, like) -> (B, n)``; an example not
    chosen (probability 1 - p) gets a flat response. Consecutive filters in a
    `workbench.augment.Chain` share one FFT pair (`_filter_run`), with the same random draws as
    one after the other.
    """

    def __init__(self, sample_rate: int, p: float = 1.0) -> None:
        super().__init__(p)
        self.sample_rate = sample_rate

    def response(self, f: Tensor, generator: Generator, like: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, generator: Generator = None) -> Tensor:
        return _filter_run([self], x, generator)


def _filter_run(filters: list[_FFTFilter], x: Tensor, generator: Generator) -> Tensor:
    """Apply FFT-domain filters of the same sample rate in turn with one rfft / irfft pair."""
    if x.dim() != 2:
        raise ValueError(f"{type(filters[0]).__name__} expects (B, S), got {tuple(x.shape)}")
    active = [flt for flt in filters if flt.p > 0.0]
    if not active or x.shape[0] == 0:
        return x
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    sample_rate = active[0].sample_rate
    n = _fast_length(work.shape[-1] + sample_rate // 20)
    f = torch.fft.rfftfreq(n, d=1.0 / sample_rate, device=x.device, dtype=work.dtype)
    gain = None
    for flt in active:
        chosen = None if flt.p == 1.0 else _draw(torch.rand, (x.shape[0], 1), generator, x) < flt.p
        h = flt.response(f, generator, work)
        h = h if chosen is None else torch.where(chosen, h, torch.ones_like(h))
        gain = h if gain is None else gain * h
    spectrum = torch.fft.rfft(work, n=n)
    torch.view_as_real(spectrum).mul_(gain.unsqueeze(-1))  # real response: scale re and im in place
    return torch.fft.irfft(spectrum, n=n)[..., : x.shape[-1]].to(x.dtype)


def _ratio_power(f: Tensor, cutoff: Tensor, order: int) -> Tensor:
    """(f / fc)^(2 order) by repeated products (much cheaper than pow on CPU). f (n,), cutoff (B, 1)."""
    r = (f * cutoff.reciprocal()).square_()
    out = r
    for _ in range(order - 1):
        out = out * r
    return out


def _butter_lowpass(f: Tensor, cutoff: Tensor, order: int) -> Tensor:
    """|H| of an order-n Butterworth low-pass: 1 / sqrt(1 + (f / fc)^2n)."""
    return _ratio_power(f, cutoff, order).add_(1.0).rsqrt_()


def _butter_highpass(f: Tensor, cutoff: Tensor, order: int) -> Tensor:
    """|H| of an order-n Butterworth high-pass: 1 / sqrt(1 + (fc / f)^2n)."""
    return _ratio_power(f.clamp(min=1e-3).reciprocal(), cutoff.reciprocal(), order).add_(1.0).rsqrt_()


class LowPass(_FFTFilter):
    """Butterworth-magnitude low-pass (order 4: 24 dB/octave), cutoff uniform in Hz."""

    def __init__(self, sample_rate: int, min_cutoff: float = 2200.0, max_cutoff: float = 4000.0, order: int = 4,
                 p: float = 1.0) -> None:
        super().__init__(sample_rate, p)
        self.min_cutoff, self.max_cutoff, self.order = min_cutoff, max_cutoff, order

    def response(self, f: Tensor, generator: Generator, like: Tensor) -> Tensor:
        cutoff = _uniform((like.shape[0], 1), self.min_cutoff, self.max_cutoff, generator, like)
        return _butter_lowpass(f, cutoff, self.order)


class HighPass(_FFTFilter):
    """Butterworth-magnitude high-pass (order 4), cutoff uniform in Hz."""

    def __init__(self, sample_rate: int, min_cutoff: float = 200.0, max_cutoff: float = 1200.0, order: int = 4,
                 p: float = 1.0) -> None:
        super().__init__(sample_rate, p)
        self.min_cutoff, self.max_cutoff, self.order = min_cutoff, max_cutoff, order

    def response(self, f: Tensor, generator: Generator, like: Tensor) -> Tensor:
        cutoff = _uniform((like.shape[0], 1), self.min_cutoff, self.max_cutoff, generator, like)
        return _butter_highpass(f, cutoff, self.order)


class BandPass(_FFTFilter):
    """Band-pass around a log-uniform centre, bandwidth a uniform fraction of the centre
    (as torch-audiomentations' BandPassFilter)."""

    def __init__(self, sample_rate: int, min_center: float = 200.0, max_center: float = 4000.0,
                 min_bandwidth: float = 0.5, max_bandwidth: float = 1.5, order: int = 4, p: float = 1.0) -> None:
        super().__init__(sample_rate, p)
        self.min_center, self.max_center = min_center, max_center
        self.min_bandwidth, self.max_bandwidth, self.order = min_bandwidth, max_bandwidth, order

    def response(self, f: Tensor, generator: Generator, like: Tensor) -> Tensor:
        b = like.shape[0]
        center = torch.exp(_uniform((b, 1), math.log(self.min_center), math.log(self.max_center), generator, like))
        half = center * _uniform((b, 1), self.min_bandwidth, self.max_bandwidth, generator, like) / 2
        low = (center - half).clamp(min=1.0)
        return _butter_highpass(f, low, self.order) * _butter_lowpass(f, center + half, self.order)


class HighLowPass(_FFTFilter):
    """CLMR's filter: each example gets, with even odds, a high-pass (200-1200 Hz) or a low-pass
    (2200-4000 Hz) (torchaudio-augmentations HighLowPass defaults)."""

    def __init__(self, sample_rate: int, highpass: tuple[float, float] = (200.0, 1200.0),
                 lowpass: tuple[float, float] = (2200.0, 4000.0), order: int = 4, p: float = 1.0) -> None:
        super().__init__(sample_rate, p)
        self.highpass, self.lowpass, self.order = tuple(highpass), tuple(lowpass), order

    def response(self, f: Tensor, generator: Generator, like: Tensor) -> Tensor:
        b = like.shape[0]
        use_high = _draw(torch.rand, (b, 1), generator, like) < 0.5
        high = _butter_highpass(f, _uniform((b, 1), *self.highpass, generator, like), self.order)
        low = _butter_lowpass(f, _uniform((b, 1), *self.lowpass, generator, like), self.order)
        return torch.where(use_high, high, low)


class RandomEQ(_FFTFilter):
    """A few peaking bands: centres log-uniform, gains uniform in dB, widths in octaves.

    Each band is a bell in log-frequency, ``gain * exp(-(log2(f / fc) / (width / 2))^2 / 2)`` dB,
    zero-phase (close to an RBJ peaking biquad's magnitude, without its phase).
    """

    def __init__(self, sample_rate: int, n_bands: int = 3, min_center: float = 60.0, max_center: float = 8000.0,
                 min_gain_db: float = -6.0, max_gain_db: float = 6.0, min_width: float = 0.5, max_width: float = 2.0,
                 p: float = 1.0) -> None:
        super().__init__(sample_rate, p)
        self.n_bands, self.min_center, self.max_center = n_bands, min_center, max_center
        self.min_gain_db, self.max_gain_db, self.min_width, self.max_width = (min_gain_db, max_gain_db,
                                                                              min_width, max_width)

    def response(self, f: Tensor, generator: Generator, like: Tensor) -> Tensor:
        shape = (like.shape[0], self.n_bands, 1)
        center = _uniform(shape, math.log2(self.min_center), math.log2(self.max_center), generator, like)
        gain = _uniform(shape, self.min_gain_db, self.max_gain_db, generator, like)
        width = _uniform(shape, self.min_width, self.max_width, generator, like)
        octaves = torch.log2(f.clamp(min=1.0)) - center  # (B, bands, n)
        db = (gain * torch.exp(-0.5 * (octaves / (width / 2)).square())).sum(dim=1)
        return torch.pow(10.0, db / 20.0)
