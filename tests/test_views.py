"""View sampling: shapes, content, the gap between every pair, uniform placements, seeds, resume."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from workbench.data.store import StoreWriter
from workbench.data.views import ViewBatch, ViewSampler, chunk_track

SR = 1_000  # a low sample rate keeps the tracks small; the sampler works in seconds * sample_rate


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    w = StoreWriter(tmp_path_factory.mktemp("views") / "s", SR, ["x"])
    for i in range(20):
        w.add(f"long{i}", rng.uniform(-1, 1, size=int(rng.integers(12_000, 40_000))), "pool", [1])
    w.add("short0", rng.uniform(-1, 1, size=5_000), "pool", [0])  # too short for 2 x 4 s + 4 s
    w.add("short1", rng.uniform(-1, 1, size=11_999), "pool", [0])
    # Silent for its first 6 s, then loud for 34 s: about a third of the placements of 2 views
    # of 4 s with a 4 s gap touch the silence.
    half = np.concatenate([np.zeros(6_000), rng.uniform(-1, 1, size=34_000)])
    w.add("half_silent", half, "other", [0])
    return w.commit()


def _sampler(store, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ViewSampler(store, store.indices("pool"), **kw)


def test_shapes_content_and_distinct_tracks(store):
    s = _sampler(store, n_views=3, duration=2.0, min_gap=1.0)
    batch = s.sample(16)
    assert isinstance(batch, ViewBatch) and len(batch.views) == 3
    for v in batch.views:
        assert v.shape == (16, 2_000) and v.dtype == torch.float32
    assert batch.track_idx.shape == (16,) and batch.starts.shape == (16, 3)
    assert batch.track_idx.dtype == batch.starts.dtype == torch.int64
    assert len(set(batch.track_idx.tolist())) == 16  # distinct tracks when B <= eligible tracks
    for k in range(3):
        expected = store.segments(batch.track_idx.numpy(), batch.starts[:, k].numpy(), 2_000)
        np.testing.assert_array_equal(batch.views[k].numpy(), expected)


@pytest.mark.parametrize("n_views, duration, gap", [(2, 4.0, 4.0), (3, 2.0, 1.5), (4, 1.0, 0.0)])
def test_gap_respected_for_every_pair(store, n_views, duration, gap):
    s = _sampler(store, n_views=n_views, duration=duration, min_gap=gap)
    batch = s.sample(64)  # more examples than tracks: tracks repeat, placements differ
    starts = batch.starts.numpy()
    lengths = store.lengths[batch.track_idx.numpy()]
    seg, g = int(duration * SR), int(gap * SR)
    for row, n in zip(starts, lengths):
        assert row.min() >= 0 and row.max() + seg <= n
        for i in range(n_views):
            for j in range(n_views):
                if i != j and row[i] < row[j]:
                    assert row[j] - (row[i] + seg) >= g  # end of the earlier to start of the later


def test_short_tracks_excluded_with_warning(store):
    with pytest.warns(UserWarning, match="2 of 22 tracks are shorter than the 12.0 s"):
        s = ViewSampler(store, store.indices("pool"))
    assert len(s.indices) == 20
    assert not set(s.sample(20).track_idx.tolist()) & {20, 21}


def test_placements_uniform_and_view_order_shuffled(tmp_path):
    # One track with slack R = 3 samples: (u1 <= u2) in {0..3} gives C(5, 2) = 10 placements.
    w = StoreWriter(tmp_path / "s", 100, ["x"])
    w.add("t", np.random.default_rng(0).uniform(-1, 1, size=303), "pool", [1])
    s = ViewSampler(w.commit(), [0], n_views=2, duration=1.0, min_gap=1.0, reject_silence=False)
    starts = s.sample(20_000).starts.numpy()
    first, second = starts.min(1), starts.max(1) - 200  # u1, u2
    assert np.all(second >= first)
    counts = np.bincount(first * 4 + second, minlength=16)[[a * 4 + b for a in range(4) for b in range(a, 4)]]
    assert counts.sum() == 20_000 and np.all(np.abs(counts - 2_000) < 200)  # about 5 sigma
    assert abs(np.mean(starts[:, 0] < starts[:, 1]) - 0.5) < 0.02


def test_silence_rejection(store):
    idx = store.indices("other")
    kept = ViewSampler(store, idx, reject_silence=False, seed=0).sample(200)
    rejected = ViewSampler(store, idx, reject_silence=True, silence_db=-50.0, seed=0, max_redraws=20).sample(200)

    def silent_views(batch):
        rms = torch.stack([v.pow(2).mean(1).sqrt() for v in batch.views], 1)
        return int((rms < 10 ** (-50 / 20)).any(1).sum())

    assert silent_views(kept) > 20
    assert silent_views(rejected) == 0


def test_seeds_and_resume(store):
    a, b, c = (_sampler(store, seed=s) for s in (0, 0, 1))
    x, y, z = a.sample(8), b.sample(8), c.sample(8)
    torch.testing.assert_close(x.starts, y.starts)
    torch.testing.assert_close(x.views[0], y.views[0])
    assert not torch.equal(x.starts, z.starts)

    state = a.state_dict()
    after = [a.sample(8) for _ in range(2)]
    fresh = _sampler(store, seed=123)
    fresh.load_state_dict(json.loads(json.dumps(state)))  # the trainer keeps it as JSON in checkpoints
    for want in after:
        got = fresh.sample(8)
        torch.testing.assert_close(got.track_idx, want.track_idx)
        torch.testing.assert_close(got.starts, want.starts)
        torch.testing.assert_close(got.views[1], want.views[1])
    with pytest.raises(ValueError, match="load_state_dict"):
        _sampler(store, duration=2.0).load_state_dict(state)


def test_from_config(store, smoke_cfg):
    cfg = replace(smoke_cfg, views=replace(smoke_cfg.views, n_views=3, min_gap=1.0))
    with pytest.warns(UserWarning, match="left out"):
        s = ViewSampler.from_config(store, store.indices("pool"), cfg)
    assert (s.n_views, s.segment_samples, s.gap_samples) == (3, int(cfg.audio.segment_seconds * SR), 1_000)


def test_bad_parameters_raise(store):
    idx = store.indices("pool")
    with pytest.raises(ValueError, match="n_views must be at least 2"):
        ViewSampler(store, idx, n_views=1)
    longest = store.lengths[idx].max() / SR
    with pytest.raises(ValueError,
                       match=rf"no track fits 2 views of 4.0 s with a 60.0 s gap .*longest .* {longest:.1f} s"):
        ViewSampler(store, idx, min_gap=60.0)
    with pytest.raises(ValueError, match="duration must be positive"):
        ViewSampler(store, idx, duration=0.0)
    with pytest.raises(ValueError, match="min_gap must be >= 0"):
        ViewSampler(store, idx, min_gap=-1.0)
    with pytest.raises(ValueError, match="no track indices"):
        ViewSampler(store, [])
    with pytest.raises(IndexError):
        ViewSampler(store, [len(store)])
    with pytest.raises(ValueError, match="batch_size"):
        _sampler(store).sample(0)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_chunk_track(as_tensor):
    x = np.arange(10, dtype=np.float32) + 1
    x = torch.from_numpy(x) if as_tensor else x
    drop, pad = chunk_track(x, 4), chunk_track(x, 4, last="pad")
    assert type(drop) is type(x) and drop.shape == (2, 4) and pad.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(drop).ravel(), np.arange(1, 9))
    np.testing.assert_array_equal(np.asarray(pad)[2], [9, 10, 0, 0])
    assert chunk_track(x, 5).shape == (2, 5)  # exact fit: no padded chunk either way
    assert chunk_track(x, 5, last="pad").shape == (2, 5)
    short = chunk_track(x[:3], 4)  # shorter than one chunk: one padded chunk, so it has an embedding
    np.testing.assert_array_equal(np.asarray(short), [[1, 2, 3, 0]])
    with pytest.raises(ValueError, match="'drop' or 'pad'"):
        chunk_track(x, 4, last="wrap")
    with pytest.raises(ValueError, match=r"\(S,\)"):
        chunk_track(x.reshape(2, 5), 4)


def test_ranks_share_one_global_batch_and_never_repeat_a_track(store):
    """Every rank draws the same global batch and keeps its slice: the slices put together are
    the one-process batch, and no track sits on two ranks while the pool has B tracks."""
    world, batch = 4, 16  # 20 eligible tracks >= 16
    whole = _sampler(store, seed=3, reject_silence=False)
    ranks = [_sampler(store, seed=3, reject_silence=False, rank=r, world=world) for r in range(world)]
    for _ in range(5):
        ref = whole.sample(batch)
        parts = [s.sample(batch) for s in ranks]
        tracks = torch.cat([p.track_idx for p in parts])
        assert torch.equal(tracks, ref.track_idx)
        assert torch.equal(torch.cat([p.starts for p in parts]), ref.starts)
        assert len(set(tracks.tolist())) == batch  # no track on two ranks
    with pytest.raises(ValueError, match="multiple of the 4 processes"):
        ranks[0].sample(10)
    with pytest.raises(ValueError, match="rank 4 outside"):
        _sampler(store, rank=4, world=4)


def test_silence_redraws_do_not_desynchronise_ranks(store):
    """A redraw only the owning rank sees uses its own generator: the next global batch is the same
    on every rank."""
    ranks = [ViewSampler(store, store.indices("other").tolist() + store.indices("pool")[:3].tolist(), seed=1,
                         rank=r, world=2) for r in range(2)]
    for _ in range(4):
        for s in ranks:
            s.sample(4)
    assert ranks[0].rng.bit_generator.state == ranks[1].rng.bit_generator.state


@pytest.mark.parametrize("grid", [7, 512])
def test_starts_on_the_grid_keep_the_gap_and_the_track(store, grid):
    """views.crop="frames": starts on multiples of the hop, every pair still ``min_gap`` apart,
    every view inside its track, and the placements reach the end of each track's slack."""
    s = _sampler(store, n_views=3, duration=2.0, min_gap=1.5, grid=grid)
    batches = [s.sample(64) for _ in range(20)]
    starts = np.concatenate([b.starts.numpy() for b in batches])
    lengths = store.lengths[np.concatenate([b.track_idx.numpy() for b in batches])]
    assert (starts % grid == 0).all() and (starts >= 0).all() and (starts.max(axis=1) + 2_000 <= lengths).all()
    assert (np.diff(np.sort(starts, axis=1), axis=1) - 2_000 >= 1_500).all()
    last_start = starts.max(axis=1) - (lengths - 2_000)  # 0 when the last view ends on the track's end
    assert (last_start > -grid).any()  # some placement ends within one grid step of the end
