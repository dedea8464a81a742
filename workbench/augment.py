"""Batched audio augmentations: whole batch, its device, per-example random parameters.

The conventions (``forward(x, generator=None)`` on ``(B, S)`` or ``(B, 1, F, T)``, probability
``p``, per-example parameters drawn from a ``torch.Generator`` so a seed reproduces a batch), the
base class `Augmentation` and the waveform augmentations are in `workbench.augment_wave`; they
are re-exported here, so ``from workbench import augment as A`` reaches every transform. This
module holds the spectrogram augmentations ``(B, 1, F, T)`` (SpecAugment masks, BYOL-A's random
resized crop and mixup), the chains and a notebook preview.

Named chains (``CHAINS``, ``build_chain``): ``paper`` (identity: the released code augments only
by sampling segments), ``clmr`` (Spijkervet & Burgoyne 2021, Spijkervet/CLMR config.yaml and
torchaudio-augmentations defaults), ``byol-a`` (Niizumi et al. 2021, nttcslab/byol-a: mixup
then random resized crop on the log-mel). Compose your own with ``Chain(wave=[...], spec=[...])``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from workbench.augment_filters import BandPass, HighLowPass, HighPass, LowPass, RandomEQ, _FFTFilter, _filter_run
from workbench.augment_wave import (
    Augmentation,
    Delay,
    Gain,
    Generator,
    MixBatch,
    Noise,
    PitchShift,
    PolarityInversion,
    Reverb,
    TimeShift,
    _partner,
    _uniform,
)

__all__ = [
    # re-exported from workbench.augment_wave and workbench.augment_filters
    "Generator", "Augmentation", "Gain", "PolarityInversion", "Noise", "LowPass", "HighPass", "BandPass",
    "HighLowPass", "RandomEQ", "TimeShift", "Delay", "MixBatch", "Reverb", "PitchShift",
    # spectrogram augmentations, chains
    "TimeMask", "FrequencyMask", "RandomResizedCrop", "Mixup", "LevelTilt", "Chain", "paper_chain", "clmr_chain",
    "byol_a_chain", "level_tilt_chain", "CHAINS", "build_chain",
]


# --------------------------------------------------------------------------- spectrogram (B, 1, F, T)
def _fill_value(m: Tensor, fill: str | float) -> Tensor:
    """Per-example mean (a masked region reads as average, as 0 does for BYOL-A's normalised
    log-mel) or a constant."""
    if fill == "mean":
        return m.mean(dim=(1, 2, 3), keepdim=True)
    return torch.full_like(m[:, :, :1, :1], float(fill))


class _AxisMask(Augmentation):
    """SpecAugment masking along one axis: ``n_masks`` bands per example, widths uniform in
    [min_width, max_width], positions uniform (Park et al. 2019)."""

    ndim = 4
    subset = False
    axis = -1

    def __init__(self, max_width: int, n_masks: int = 1, min_width: int = 0, fill: str | float = "mean",
                 p: float = 1.0) -> None:
        super().__init__(p)
        if not 0 <= min_width <= max_width:
            raise ValueError(f"{type(self).__name__}: need 0 <= min_width <= max_width, got {min_width}, {max_width}")
        self.max_width, self.n_masks, self.min_width, self.fill = max_width, n_masks, min_width, fill

    def transform(self, m: Tensor, generator: Generator) -> Tensor:
        size = m.shape[self.axis]
        width = torch.floor(_uniform((m.shape[0], self.n_masks), self.min_width, self.max_width + 1, generator, m))
        width = width.clamp(max=min(self.max_width, size))
        start = torch.floor(_uniform((m.shape[0], self.n_masks), 0, 1, generator, m) * (size - width + 1))
        pos = torch.arange(size, device=m.device, dtype=m.dtype).view(1, 1, -1)
        hit = ((pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))).any(dim=1)  # (B, size)
        hit = hit.view(m.shape[0], 1, 1, size) if self.axis == -1 else hit.view(m.shape[0], 1, size, 1)
        return torch.where(hit, _fill_value(m, self.fill), m)


class TimeMask(_AxisMask):
    """SpecAugment time masking (frames)."""

    axis = -1


class FrequencyMask(_AxisMask):
    """SpecAugment frequency masking (mel bins)."""

    axis = -2


class RandomResizedCrop(Augmentation):
    """BYOL-A's random resize crop (nttcslab/byol-a RandomResizeCrop): the mel is centred on a
    virtual canvas ``virtual_scale`` times its size, a crop of ``freq_scale`` x ``time_scale``
    of the input size (clipped to the canvas) is taken at a random place and resized back with
    bicubic interpolation. Batched with ``affine_grid``/``grid_sample``; the canvas outside the
    input holds the example's mean (BYOL-A's zeros on a normalised log-mel)."""

    ndim = 4
    subset = False

    def __init__(self, virtual_scale: tuple[float, float] = (1.0, 1.5), freq_scale: tuple[float, float] = (0.6, 1.5),
                 time_scale: tuple[float, float] = (0.6, 1.5), p: float = 1.0) -> None:
        super().__init__(p)
        self.virtual_scale, self.freq_scale, self.time_scale = (tuple(virtual_scale), tuple(freq_scale),
                                                                tuple(time_scale))

    def _axis(self, size: int, virtual: float, scale: tuple[float, float], generator: Generator,
              like: Tensor) -> tuple[Tensor, Tensor]:
        """Affine scale and offset (normalised coordinates, align_corners=True) along one axis."""
        canvas = int(size * virtual)
        crop = torch.floor(_uniform((like.shape[0],), *scale, generator, like) * size).clamp(1, canvas)
        start = torch.floor(_uniform((like.shape[0],), 0, 1, generator, like) * (canvas - crop + 1))
        first = start - (canvas - size) // 2  # first cropped pixel in input coordinates
        denom = max(size - 1, 1)
        return (crop - 1) / denom, (2 * first + crop - 1) / denom - 1

    def transform(self, m: Tensor, generator: Generator) -> Tensor:
        b, _, n_freq, n_time = m.shape
        sy, ty = self._axis(n_freq, self.virtual_scale[0], self.freq_scale, generator, m)
        sx, tx = self._axis(n_time, self.virtual_scale[1], self.time_scale, generator, m)
        theta = torch.zeros(b, 2, 3, device=m.device, dtype=m.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
        grid = F.affine_grid(theta, list(m.shape), align_corners=True)
        fill = _fill_value(m, "mean")
        return F.grid_sample(m - fill, grid, mode="bicubic", padding_mode="zeros", align_corners=True) + fill


class Mixup(Augmentation):
    """BYOL-A's mixup (nttcslab/byol-a MixupBYOLA): ``log((1 - a) exp(x) + a exp(z))`` with
    ``a`` uniform in [0, ratio] per example, here on dB (power) so ``exp`` is 10^(dB / 10).

    ``z`` comes from a memory bank of the last ``memory`` examples seen (BYOL-A: 2048), or from
    another example of the batch when ``memory=0`` or the bank is still empty.
    """

    ndim = 4
    subset = False

    def __init__(self, ratio: float = 0.4, memory: int = 2048, p: float = 1.0) -> None:
        super().__init__(p)
        self.ratio, self.memory = ratio, memory
        self._bank: Tensor | None = None

    def transform(self, m: Tensor, generator: Generator) -> Tensor:
        b = m.shape[0]
        bank = self._bank
        if bank is not None and (bank.shape[1:] != m.shape[1:] or bank.device != m.device):
            bank = None
        if self.memory > 0 and bank is not None:
            pick = torch.floor(_uniform((b,), 0, 1, generator, m) * bank.shape[0]).long().clamp(max=bank.shape[0] - 1)
            other = bank[pick].to(m.dtype)
        elif b >= 2:
            other = m[_partner(b, generator, m)]
        else:
            other = m
        if self.memory > 0:
            fresh = m.detach()
            self._bank = (fresh if bank is None else torch.cat([bank, fresh]))[-self.memory:]
        alpha = _uniform((b, 1, 1, 1), 0, self.ratio, generator, m)
        c = math.log(10.0) / 10.0  # dB -> natural log of power
        stacked = torch.stack([c * m + torch.log1p(-alpha), c * other + torch.log(alpha)])
        return torch.logsumexp(stacked, dim=0) / c


class LevelTilt(Augmentation):
    """A random level and spectral tilt per example, on the log-mel in dB: ``x + g + t (f / (F - 1) - 1/2)``
    with ``g`` uniform in [-max_gain_db, max_gain_db] and ``t`` in [-max_tilt_db, max_tilt_db]
    (the top bin ``t / 2`` dB above the mean, the bottom ``t / 2`` below). Two views of one track
    then differ in what its mixing (level, brightness) gives both, so that cue alone does not tell
    them from other tracks' views."""

    ndim = 4
    subset = False

    def __init__(self, max_gain_db: float = 6.0, max_tilt_db: float = 6.0, p: float = 1.0) -> None:
        super().__init__(p)
        if max_gain_db < 0 or max_tilt_db < 0:
            raise ValueError(f"LevelTilt: ranges must be >= 0 dB, got {max_gain_db}, {max_tilt_db}")
        self.max_gain_db, self.max_tilt_db = float(max_gain_db), float(max_tilt_db)

    def transform(self, m: Tensor, generator: Generator) -> Tensor:
        b, n_freq = m.shape[0], m.shape[2]
        gain = _uniform((b, 1, 1, 1), -self.max_gain_db, self.max_gain_db, generator, m)
        tilt = _uniform((b, 1, 1, 1), -self.max_tilt_db, self.max_tilt_db, generator, m)
        ramp = torch.linspace(-0.5, 0.5, n_freq, device=m.device, dtype=m.dtype).view(1, 1, -1, 1)
        return m + gain + tilt * ramp


# --------------------------------------------------------------------------- chains
class Chain(nn.Module):
    """Waveform augmentations applied to (B, S) views before the mel front end, spectrogram
    ones to (B, 1, F, T) after it. Each call draws new per-example parameters."""

    def __init__(self, wave: list[Augmentation] | tuple = (), spec: list[Augmentation] | tuple = ()) -> None:
        super().__init__()
        self.wave_transforms = nn.ModuleList(wave)
        self.spec_transforms = nn.ModuleList(spec)

    def wave(self, x: Tensor, generator: Generator = None) -> Tensor:
        """x: (B, S) -> (B, S)."""
        if x.dim() != 2:
            raise ValueError(f"Chain.wave expects (B, S), got {tuple(x.shape)}")
        run: list[_FFTFilter] = []  # consecutive FFT filters share one FFT pair
        for t in self.wave_transforms:
            if run and not (isinstance(t, _FFTFilter) and t.sample_rate == run[0].sample_rate):
                x, run = _filter_run(run, x, generator), []
            if isinstance(t, _FFTFilter):
                run.append(t)
            else:
                x = t(x, generator)
        return _filter_run(run, x, generator) if run else x

    def spec(self, m: Tensor, generator: Generator = None) -> Tensor:
        """m: (B, 1, F, T) -> (B, 1, F, T)."""
        if m.dim() != 4 or m.shape[1] != 1:
            raise ValueError(f"Chain.spec expects (B, 1, F, T), got {tuple(m.shape)}")
        for t in self.spec_transforms:
            m = t(m, generator)
        return m

    @property
    def is_identity(self) -> bool:
        return not self.wave_transforms and not self.spec_transforms


def paper_chain(sample_rate: int) -> Chain:
    """The released code: views differ only by where the segments are sampled."""
    return Chain()


def clmr_chain(sample_rate: int) -> Chain:
    """CLMR (Spijkervet & Burgoyne 2021), probabilities from Spijkervet/CLMR config/config.yaml
    (polarity 0.8, noise 0.01, gain 0.3, filters 0.8, delay 0.3, pitch 0.6, reverb 0.6) and
    ranges from torchaudio-augmentations 0.2.4 defaults. Its random crop is our segment
    sampling. Noise: std ratio 1e-4..1e-2 of the signal = 40..80 dB SNR. Reverb is our
    synthetic room, not sox's."""
    return Chain(wave=[
        PolarityInversion(p=0.8),
        Noise(min_snr_db=40.0, max_snr_db=80.0, p=0.01),
        Gain(min_db=-20.0, max_db=-1.0, p=0.3),
        HighLowPass(sample_rate, p=0.8),
        Delay(sample_rate, p=0.3),
        PitchShift(sample_rate, min_semitones=-7.0, max_semitones=7.0, p=0.6),
        Reverb(sample_rate, p=0.6),
    ])


def byol_a_chain(sample_rate: int) -> Chain:
    """BYOL-A (Niizumi et al. 2021): mixup (ratio 0.4, memory 2048) then random resized crop."""
    return Chain(spec=[Mixup(ratio=0.4, memory=2048), RandomResizedCrop()])


def level_tilt_chain(sample_rate: int) -> Chain:
    """The paper's views, each with its own random level and spectral tilt (`LevelTilt`, 6 dB)."""
    return Chain(spec=[LevelTilt()])


CHAINS: dict[str, Callable[[int], Chain]] = {"paper": paper_chain, "clmr": clmr_chain, "byol-a": byol_a_chain,
                                             "level-tilt": level_tilt_chain}


def build_chain(name: str, sample_rate: int = 16_000) -> Chain:
    """A named chain from ``CHAINS``; an unknown name lists the valid ones."""
    if name not in CHAINS:
        raise ValueError(f"unknown augmentation chain {name!r}; expected one of {', '.join(CHAINS)}")
    return CHAINS[name](sample_rate)
