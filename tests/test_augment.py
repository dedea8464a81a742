"""Batched augmentations: per-example randomness, reproducibility, p, shapes/devices, the math."""

from __future__ import annotations

import math

import pytest
import torch

from workbench import augment as A

SR = 16_000


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sine(freq: float, seconds: float = 1.0, batch: int = 1, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).repeat(batch, 1)


def _music(batch: int = 6, seconds: float = 1.0) -> torch.Tensor:
    """A batch of different tone mixtures plus a little noise."""
    g = _gen(123)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 110 * 2 ** (torch.randint(0, 24, (batch, 1), generator=g) / 12)
    x = sum(torch.sin(2 * math.pi * f0 * h * t) / h for h in (1, 2, 3))
    return 0.3 * x + 0.01 * torch.randn(batch, t.numel(), generator=g)


WAVE = [
    lambda p: A.Gain(p=p), lambda p: A.PolarityInversion(p=p), lambda p: A.Noise(color="pink", p=p),
    lambda p: A.LowPass(SR, p=p), lambda p: A.HighPass(SR, p=p), lambda p: A.BandPass(SR, p=p),
    lambda p: A.HighLowPass(SR, p=p), lambda p: A.RandomEQ(SR, p=p), lambda p: A.TimeShift(SR, p=p),
    lambda p: A.TimeShift(SR, circular=False, p=p), lambda p: A.Delay(SR, p=p), lambda p: A.MixBatch(p=p),
    lambda p: A.Reverb(SR, p=p), lambda p: A.PitchShift(SR, p=p),
]
SPEC = [
    lambda p: A.TimeMask(20, min_width=2, p=p), lambda p: A.FrequencyMask(20, min_width=2, p=p),
    lambda p: A.RandomResizedCrop(p=p),
    lambda p: A.Mixup(memory=0, p=p), lambda p: A.Mixup(memory=16, p=p), lambda p: A.LevelTilt(p=p),
]
ALL = [(make, "wave") for make in WAVE] + [(make, "spec") for make in SPEC]
IDS = [type(make(1.0)).__name__ + str(i) for i, (make, _) in enumerate(ALL)]


def _input(kind: str) -> torch.Tensor:
    if kind == "wave":
        return _music()
    return torch.randn(6, 1, 32, 40, generator=_gen(5)) * 10 - 40  # dB-like mel


@pytest.mark.parametrize("make,kind", ALL, ids=IDS)
def test_shape_dtype_device_and_finite(make, kind) -> None:
    x = _input(kind)
    y = make(1.0)(x, _gen())
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("make,kind", ALL, ids=IDS)
def test_same_seed_same_output_and_p0_identity(make, kind) -> None:
    x = _input(kind)
    assert torch.equal(make(1.0)(x, _gen(7)), make(1.0)(x, _gen(7)))
    assert torch.equal(make(0.0)(x, _gen(7)), x)


@pytest.mark.parametrize("make,kind", ALL, ids=IDS)
def test_per_example_parameters_differ(make, kind) -> None:
    """The same clip repeated over the batch comes out differently per example."""
    x = _input(kind)[:1].repeat(6, *[1] * (_input(kind).dim() - 1))
    if type(make(1.0)).__name__ == "PolarityInversion":
        # no parameter to vary: the per-example draw is whether to flip (p = 0.5 here)
        y = make(0.5)(_input(kind)[:1].repeat(16, *[1] * (_input(kind).dim() - 1)), _gen(1))
        flipped = torch.tensor([torch.equal(r, -x[0]) for r in y])
        kept = torch.tensor([torch.equal(r, x[0]) for r in y])
        assert (flipped | kept).all() and flipped.any() and kept.any()
        return
    if type(make(1.0)).__name__ in ("MixBatch", "Mixup"):
        x = _input(kind)  # mixing identical clips changes nothing; check partners differ instead
    y = make(1.0)(x, _gen(1))
    diffs = (y - x).flatten(1)
    distinct: list[torch.Tensor] = []
    for d in diffs:
        if not any(torch.allclose(d, e, atol=1e-6) for e in distinct):
            distinct.append(d)
    discrete = type(make(1.0)).__name__ == "Delay"  # 6 possible delays: repeats are expected
    assert len(distinct) >= (3 if discrete else 6)


def test_half_precision_input_keeps_dtype() -> None:
    x = _music().to(torch.bfloat16)
    for aug in (A.LowPass(SR), A.PitchShift(SR), A.Reverb(SR), A.Noise()):
        assert aug(x, _gen()).dtype == torch.bfloat16


def test_p_one_always_applies_and_p_half_applies_to_some() -> None:
    x = _music(batch=64)
    assert torch.equal(A.PolarityInversion(p=1.0)(x, _gen()), -x)
    y = A.PolarityInversion(p=0.5)(x, _gen())
    flipped = torch.isclose(y, -x).all(dim=1)
    kept = torch.isclose(y, x).all(dim=1)
    assert (flipped | kept).all() and 10 < flipped.sum() < 54
    y = A.LowPass(SR, 500, 500, p=0.5)(x, _gen())  # subset path of a filter
    changed = ~torch.isclose(y, x, atol=1e-4).all(dim=1)
    assert 10 < changed.sum() < 54


def test_subset_path_matches_batch_path() -> None:
    """An expensive transform computed on the chosen examples only returns them untouched otherwise."""
    x = _music(batch=16)
    y = A.Reverb(SR, p=0.5)(x, _gen(3))
    same = torch.isclose(y, x).all(dim=1)
    assert 0 < same.sum() < 16


def test_gain_six_db_doubles() -> None:
    x = _music()
    y = A.Gain(6.0, 6.0)(x, _gen())
    assert torch.allclose(y, x * 10 ** (6 / 20), rtol=1e-5)
    assert abs(10 ** (6 / 20) - 2.0) < 0.01


def test_noise_snr_is_as_asked() -> None:
    x = _music(batch=8)
    for color in ("white", "pink"):
        y = A.Noise(12.0, 12.0, color=color)(x, _gen())
        noise = y - x
        snr = 10 * torch.log10(x.square().mean(1) / noise.square().mean(1))
        assert torch.allclose(snr, torch.full_like(snr, 12.0), atol=0.05), (color, snr)
    assert A.Noise(color="pink")(x, _gen()).shape == x.shape
    with pytest.raises(ValueError, match="white"):
        A.Noise(color="purple")


def _level_db(x: torch.Tensor, freq: float) -> float:
    spectrum = torch.fft.rfft(x[0]).abs()
    return 20 * math.log10(spectrum[int(freq * x.shape[-1] / SR)] + 1e-12)


def test_lowpass_highpass_bandpass_attenuate_and_pass() -> None:
    cases = [(A.LowPass(SR, 1000, 1000), 200.0, 6000.0), (A.HighPass(SR, 1000, 1000), 6000.0, 200.0),
             (A.BandPass(SR, 1000, 1000, 1.0, 1.0), 1000.0, 6000.0),
             (A.BandPass(SR, 1000, 1000, 1.0, 1.0), 1000.0, 100.0)]
    for aug, f_pass, f_stop in cases:
        passed, stopped = _sine(f_pass), _sine(f_stop)
        assert abs(_level_db(aug(passed, _gen()), f_pass) - _level_db(passed, f_pass)) < 0.5, aug
        assert _level_db(aug(stopped, _gen()), f_stop) - _level_db(stopped, f_stop) < -40, aug


def test_chain_fuses_filters_like_one_after_the_other() -> None:
    x = _music()
    filters = [A.HighPass(SR, p=0.7), A.LowPass(SR, p=0.7), A.RandomEQ(SR)]
    fused = A.Chain(wave=filters).wave(x, _gen(4))
    g = _gen(4)
    y = x
    for f in filters:
        y = f(y, g)
    # same draws; only the first and last 50 ms differ (one zero-padding instead of three)
    assert torch.allclose(fused[:, 800:-800], y[:, 800:-800], atol=1e-5)


def test_time_shift_and_delay() -> None:
    x = _music()
    y = A.TimeShift(SR, max_seconds=0.1)(x, _gen())
    for i in range(x.shape[0]):  # each row is a circular roll of its input
        shifts = [k for k in range(-1600, 1601) if torch.equal(torch.roll(x[i], k), y[i])]
        assert len(shifts) == 1
    z = A.TimeShift(SR, max_seconds=0.1, circular=False)(x, _gen())
    assert (z == 0).sum() > 0
    impulse = torch.zeros(1, SR)
    impulse[0, 0] = 1.0
    echo = A.Delay(SR, volume=0.5)(impulse, _gen())
    nz = echo[0].nonzero().squeeze(1).tolist()
    assert nz[0] == 0 and echo[0, 0] == 0.5 and len(nz) == 2
    assert nz[1] * 1000 // SR in range(200, 500, 50) and echo[0, nz[1]] == 0.25


def test_mix_batch_level() -> None:
    x = _music(batch=8)
    y = A.MixBatch(-20.0, -20.0)(x, _gen())
    added = (y - x).square().mean(1).sqrt() / x.square().mean(1).sqrt()
    assert torch.allclose(added, torch.full_like(added, 0.1), rtol=1e-3)


def test_reverb_leaves_a_decaying_tail() -> None:
    burst = torch.zeros(2, SR)
    burst[:, :800] = torch.randn(2, 800, generator=_gen())
    y = A.Reverb(SR, 0.5, 0.5, 0.5, 0.5)(burst, _gen())
    tail = y[:, 2000:4000].square().mean(1)
    later = y[:, 8000:10000].square().mean(1)
    assert (tail > 0).all() and (later < tail).all()


def test_pitch_shift_moves_a_tone_and_keeps_length() -> None:
    x = _sine(440.0, seconds=1.0)
    for semitones, expected in [(12.0, 880.0), (-12.0, 220.0), (7.0, 440 * 2 ** (7 / 12))]:
        y = A.PitchShift(SR, semitones, semitones)(x, _gen())
        assert y.shape == x.shape
        peak = torch.fft.rfft(y[0]).abs().argmax().item() * SR / x.shape[-1]
        assert abs(peak - expected) < 0.03 * expected, (semitones, peak)


def test_time_and_frequency_masks_cover_the_expected_count() -> None:
    m = torch.randn(5, 1, 32, 50, generator=_gen()) + 10
    y = A.TimeMask(8, min_width=8, fill=0.0)(m, _gen())
    masked = (y == 0).all(dim=2).squeeze(1).sum(dim=1)  # frames zeroed in every bin
    assert (masked == 8).all()
    starts = [(y[i, 0] == 0).all(0).nonzero()[0].item() for i in range(5)]
    assert len(set(starts)) > 1
    y = A.FrequencyMask(6, min_width=6, fill=0.0)(m, _gen())
    assert ((y == 0).all(dim=3).squeeze(1).sum(dim=1) == 6).all()
    y = A.TimeMask(8, min_width=8, fill="mean")(m, _gen())
    assert ((y != m).all(dim=2).squeeze(1).sum(dim=1) == 8).all()
    with pytest.raises(ValueError, match="min_width"):
        A.TimeMask(3, min_width=5)


def test_random_resized_crop_identity_when_scale_is_one() -> None:
    m = torch.randn(3, 1, 16, 20, generator=_gen())
    same = A.RandomResizedCrop(virtual_scale=(1.0, 1.0), freq_scale=(1.0, 1.0), time_scale=(1.0, 1.0))(m, _gen())
    assert torch.allclose(same, m, atol=1e-4)


def test_mixup_is_log_of_mixed_power() -> None:
    m = torch.randn(4, 1, 8, 10, generator=_gen()) * 10 - 30
    y = A.Mixup(ratio=0.4, memory=0)(m, _gen())
    # each output lies between its input and the loudest partner, in power
    power_in, power_out = 10 ** (m / 10), 10 ** (y / 10)
    assert (power_out >= 0.6 * power_in - 1e-9).all()
    bank = A.Mixup(memory=6)
    bank(m, _gen())
    bank(m, _gen())
    assert bank._bank.shape[0] == 6


def test_level_tilt_adds_a_level_and_a_linear_tilt_in_the_range() -> None:
    """Per example, the change is constant over time and linear over the mel bins: a level g and a
    tilt t (top bin minus bottom bin) each within its range, and different examples differ."""
    m = torch.randn(64, 1, 32, 40, generator=_gen(5)) * 10 - 40
    d = (A.LevelTilt(max_gain_db=6.0, max_tilt_db=4.0)(m, _gen(1)) - m)[:, 0]  # (B, F, T)
    assert torch.allclose(d, d[..., :1].expand_as(d), atol=1e-4)  # the same in every frame
    per_bin = d[..., 0]  # (B, F)
    tilt, gain = per_bin[:, -1] - per_bin[:, 0], per_bin.mean(dim=1)
    ramp = torch.linspace(-0.5, 0.5, 32)
    assert torch.allclose(per_bin, gain[:, None] + tilt[:, None] * ramp, atol=1e-4)  # linear in the bin
    assert gain.abs().max() <= 6.0 and tilt.abs().max() <= 4.0
    assert gain.abs().max() > 4.0 and tilt.abs().max() > 2.5 and gain.std() > 1.0  # the ranges are used
    with pytest.raises(ValueError, match="LevelTilt"):
        A.LevelTilt(max_gain_db=-1.0)


def test_shape_errors_name_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(3, 1, 100\)"):
        A.Gain()(torch.zeros(3, 1, 100))
    with pytest.raises(ValueError, match=r"\(3, 100\)"):
        A.TimeMask(3)(torch.zeros(3, 100))
    with pytest.raises(ValueError, match="p must be"):
        A.Gain(p=1.5)


def test_named_chains_and_unknown_name() -> None:
    assert set(A.CHAINS) == {"paper", "clmr", "byol-a", "level-tilt"}
    x, m = _music(batch=4), torch.randn(4, 1, 32, 40) - 40
    paper = A.build_chain("paper", SR)
    assert paper.is_identity and torch.equal(paper.wave(x), x) and torch.equal(paper.spec(m), m)
    clmr = A.build_chain("clmr", SR)
    y = clmr.wave(x, _gen())
    assert y.shape == x.shape and torch.isfinite(y).all() and torch.equal(clmr.spec(m), m)
    byol = A.build_chain("byol-a", SR)
    assert torch.equal(byol.wave(x), x) and byol.spec(m, _gen()).shape == m.shape
    assert torch.equal(A.build_chain("level-tilt", SR).wave(x), x)
    with pytest.raises(ValueError, match="paper, clmr, byol-a, level-tilt"):
        A.build_chain("simclr")
    custom = A.Chain(wave=[A.Gain(6, 6)], spec=[A.TimeMask(4)])
    assert torch.allclose(custom.wave(x), x * 10 ** 0.3)


def test_generator_on_other_device_is_not_required() -> None:
    """Without a generator the global RNG is used; nothing is created on a fixed device."""
    x = _music()
    torch.manual_seed(0)
    a = A.build_chain("clmr", SR).wave(x)
    torch.manual_seed(0)
    b = A.build_chain("clmr", SR).wave(x)
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batch_stays_on_cuda() -> None:
    x = _music().cuda()
    for make in WAVE:
        assert make(0.5)(x, torch.Generator(device="cuda").manual_seed(0)).device == x.device
        assert make(0.5)(x, _gen()).device == x.device  # a CPU generator works too
