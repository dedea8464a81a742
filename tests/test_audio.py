"""Audio front end: file loading, and MelFrontend against an independent NumPy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.audio import AudioReadError, MelFrontend, TrackMels, load_audio
from workbench.config import AudioConfig

try:
    import soundfile as sf
except ImportError:  # a GPU machine without soundfile still runs the front-end tests (bench/gpu_check.sh)
    sf = None
needs_soundfile = pytest.mark.skipif(sf is None, reason="soundfile is not installed")

# ---------------------------------------------------------------- an independent NumPy reference
# Written from the definitions librosa uses (librosa.filters.mel with htk=False, norm="slaney";
# a centred, reflect-padded STFT with a periodic Hann window), not from torchaudio.


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3  # linear part: 0 to 1 kHz
    logstep = np.log(6.4) / 27.0
    return np.where(f < 1000.0, f / f_sp, 1000.0 / f_sp + np.log(np.maximum(f, 1e-12) / 1000.0) / logstep)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    logstep = np.log(6.4) / 27.0
    min_log_mel = 1000.0 / f_sp
    return np.where(m < min_log_mel, m * f_sp, 1000.0 * np.exp(logstep * (m - min_log_mel)))


def _slaney_filters(sr, n_fft, n_mels, f_min, f_max, norm=None):
    """(n_fft // 2 + 1, n_mels) triangular filters of peak 1, or of unit area with norm="slaney"."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (fft_freqs - lo) / (mid - lo)
        falling = (hi - fft_freqs) / (hi - mid)
        fb[:, m] = np.maximum(0, np.minimum(rising, falling)) * (2.0 / (hi - lo) if norm == "slaney" else 1.0)
    return fb


def _log_mel(x, sr=16_000, n_fft=1024, hop=512, n_mels=128, f_min=0.0, f_max=None, top_db=100.0, norm=None):
    """x (S,) -> (F, T) dB of the mel power spectrum, STFT divided by the window's L2 norm."""
    f_max = sr / 2 if f_max is None else f_max
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[t * hop:t * hop + n_fft] for t in range(n_frames)])  # (T, n_fft)
    spec = np.fft.rfft(frames * window, axis=1) / np.sqrt(np.sum(window**2))
    mel = _slaney_filters(sr, n_fft, n_mels, f_min, f_max, norm).T @ (np.abs(spec) ** 2).T  # (F, T)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - top_db)


def _test_signal(seconds=1.5, sr=16_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(a * np.sin(2 * np.pi * f * t) for a, f in [(0.5, 220.0), (0.3, 1318.5), (0.1, 5000.0)])
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------- MelFrontend


@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize("f_max", [None, 11025.0])
def test_filterbank_matches_numpy_slaney(f_max, norm):
    front = MelFrontend(f_max=f_max, mel_norm=norm)
    ref = _slaney_filters(16_000, 1024, 128, 0.0, 8000.0 if f_max is None else f_max, norm)
    scale = ref.max()  # peak 1 without norm, about 1e-3 with unit-area filters
    np.testing.assert_allclose(front.filterbank.numpy(), ref, atol=1e-4 * scale, rtol=1e-4)


def test_dead_filters():
    # f_max above Nyquist (the release) leaves the top filters outside the STFT's range.
    assert MelFrontend(f_max=11025.0).dead_filters == 11
    assert int((_slaney_filters(16_000, 1024, 128, 0.0, 11025.0).sum(0) == 0).sum()) == 11
    assert MelFrontend().dead_filters == 0
    assert MelFrontend().f_max == 8000.0


@pytest.mark.parametrize("f_max,norm", [(None, None), (11025.0, None), (None, "slaney")])
def test_log_mel_matches_numpy(f_max, norm):
    quiet = _test_signal(seed=1) * 1e-3  # a second example 60 dB lower: top_db is per example
    x = torch.from_numpy(np.stack([_test_signal(), quiet]))
    out = MelFrontend(f_max=f_max, mel_norm=norm)(x)
    assert out.shape == (2, 1, 128, 1 + x.shape[1] // 512)
    for b in range(2):
        ref = _log_mel(x[b].numpy().astype(np.float64), f_max=f_max, norm=norm)
        np.testing.assert_allclose(out[b, 0].numpy(), ref, atol=5e-3)
    assert out[1].max() < out[0].max() - 50


def test_paper_shape_and_input_layouts():
    front = MelFrontend.from_config(AudioConfig())
    x = torch.randn(3, 64_000)
    a = front(x)
    assert a.shape == (3, 1, 128, AudioConfig().n_frames) == (3, 1, 128, 126)
    torch.testing.assert_close(front(x[:, None]), a)
    # top_db: nothing below each example's own max minus 100 dB, even for zero input.
    z = front(torch.zeros(1, 64_000))
    assert torch.all(z >= z.amax() - 100.0)
    for bad in (torch.randn(64_000), torch.randn(2, 2, 100), torch.randn(1, 1, 1, 100)):
        with pytest.raises(ValueError, match=r"\(B, S\) or \(B, 1, S\), got "
                           + str(tuple(bad.shape)).replace("(", r"\(").replace(")", r"\)")):
            front(bad)


def test_from_config_f_max():
    assert MelFrontend.from_config(AudioConfig(f_max=11025.0)).dead_filters == 11


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_runs_on_input_device():
    front = MelFrontend()
    x = torch.randn(2, 16_000)
    out = front(x.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.float32
    with torch.autocast("cuda", dtype=torch.bfloat16):
        mixed = front(x.cuda())
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed.cpu(), MelFrontend()(x), atol=1e-2, rtol=0)
    torch.testing.assert_close(out.cpu(), MelFrontend()(x), atol=1e-2, rtol=0)


# ---------------------------------------------------------------- load_audio


@needs_soundfile
def test_load_mono_same_rate_is_peak_normalised(tmp_path):
    x = 0.25 * _test_signal()
    sf.write(tmp_path / "a.wav", x, 16_000, subtype="FLOAT")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x / np.abs(x).max(), atol=1e-6)


@needs_soundfile
def test_load_stereo_44k_flac_mixes_and_resamples(tmp_path):
    sr, seconds = 44_100, 2.0
    t = np.arange(int(sr * seconds)) / sr
    left, right = 0.8 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "s.flac", np.stack([left, right], axis=1), sr, subtype="PCM_24")
    y = load_audio(tmp_path / "s.flac")
    assert y.shape == (32_000,)  # 2 s at 16 kHz
    # The mono mix is 0.5 sin(440 t), peak-normalised to sin(440 t); away from the edges the
    # resampled signal is that sine at 16 kHz.
    expected = np.sin(2 * np.pi * 440 * np.arange(32_000) / 16_000)
    np.testing.assert_allclose(y[500:-500], expected[500:-500], atol=2e-2)
    # Opposite-phase channels cancel in the mix: the mixing is a mean, not a channel pick.
    sf.write(tmp_path / "c.wav", np.stack([left, -left + 1e-3 * right], axis=1), sr)
    assert np.abs(load_audio(tmp_path / "c.wav", sample_rate=sr)).max() == pytest.approx(1.0)
    raw, _ = sf.read(tmp_path / "c.wav")
    assert np.abs(raw.mean(1)).max() < 1e-2  # cancelled before normalisation


@needs_soundfile
def test_max_seconds_reads_only_the_start(tmp_path):
    x = _test_signal(seconds=10.0)
    sf.write(tmp_path / "long.wav", x, 16_000)
    y = load_audio(tmp_path / "long.wav", max_seconds=2.0)
    assert y.shape == (32_000,)
    full = load_audio(tmp_path / "long.wav")
    head = x[:32_000] / np.abs(x[:32_000]).max()
    np.testing.assert_allclose(y, head, atol=1e-4)
    assert full.shape == (160_000,)


@needs_soundfile
def test_silent_file_is_returned(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(1000), 16_000)
    np.testing.assert_array_equal(load_audio(tmp_path / "z.wav"), 0)


@needs_soundfile
def test_unreadable_and_empty_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is not a wave file")
    empty_bytes = tmp_path / "zero_bytes.flac"
    empty_bytes.write_bytes(b"")
    no_frames = tmp_path / "no_frames.wav"
    sf.write(no_frames, np.zeros(0), 16_000)
    for path, reason in [(bad, None), (empty_bytes, None), (no_frames, "no samples"),
                         (tmp_path / "missing.wav", "no such file")]:
        with pytest.raises(AudioReadError, match=reason) as info:
            load_audio(path)
        assert str(path) in str(info.value)
        assert isinstance(info.value, ValueError) and info.value.path == str(path)


def test_track_mels_crop_equals_the_per_view_path():
    """A view cut from its track's log-mel on the frame grid equals the view's own log-mel to
    float rounding, the top_db clip included (per view, at its own maximum); only the first and
    last frame differ (their windows see the track beyond the view, not a reflection of it), and
    those equal the track's own frames."""
    sr, hop, seconds = 16_000, 512, 2.0
    g = torch.Generator().manual_seed(0)
    quiet = torch.zeros(3 * sr)  # digital silence: -100 dB, which the clip lifts to max - top_db
    track = torch.cat([torch.randn(4 * sr, generator=g) * 0.3, quiet, torch.randn(3 * sr, generator=g)])
    frontend = MelFrontend(sample_rate=sr, n_fft=1024, hop_length=hop, n_mels=64, top_db=60.0)
    n_frames = int(seconds * sr) // hop + 1
    mels = TrackMels(frontend, iter([(5, track.numpy()), (9, track.flip(0).numpy())]), n_frames)
    starts = torch.tensor([[0, 40 * hop], [160 * hop, 250 * hop], [200 * hop, 7 * hop]])
    tracks = torch.tensor([5, 9, 5])
    views = mels.crop(tracks, starts)
    seg = int(seconds * sr)
    full = {5: frontend.decibels(track[None])[0, 0], 9: frontend.decibels(track.flip(0)[None])[0, 0]}
    for v, cut in enumerate(views):
        assert cut.shape == (3, 1, 64, n_frames)
        for b in range(3):
            audio = (track if int(tracks[b]) == 5 else track.flip(0))
            s = int(starts[b, v])
            own = frontend(audio[None, s:s + seg])[0, 0]
            torch.testing.assert_close(cut[b, 0, :, 1:-1], own[:, 1:-1], rtol=0, atol=1e-3)
            k = s // hop
            raw = full[int(tracks[b])][:, k:k + n_frames]
            torch.testing.assert_close(cut[b, 0], torch.maximum(raw, raw.max() - 60.0), rtol=0, atol=1e-4)
    clipped = views[0][1, 0]  # track 9 from 160 hops: silence, then sound; the clip decides
    assert torch.isclose(clipped.min(), clipped.max() - 60.0, atol=1e-3)
    with pytest.raises(ValueError, match="frame grid"):
        mels.crop(tracks, starts + 1)
    for absent in (7, 10):  # below the largest index and above it
        with pytest.raises(KeyError, match="not computed"):
            mels.crop(torch.tensor([5, absent]), starts[:2])
