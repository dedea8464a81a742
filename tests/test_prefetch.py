"""The background data path: the same batches as the synchronous sampler, exact resume from the
state of the batches consumed, and no thread left behind on an error or an interrupt."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from workbench.data.prefetch import Prefetcher, auto_workers
from workbench.data.store import StoreWriter
from workbench.data.views import ViewSampler

SR = 1_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(1)
    w = StoreWriter(tmp_path_factory.mktemp("prefetch") / "s", SR, ["x"])
    for i in range(40):
        w.add(f"t{i}", rng.uniform(-1, 1, size=int(rng.integers(12_000, 30_000))), "pool", [1])
    # silent for its first 8 s: silence redraws (the second generator) take part
    w.add("half_silent", np.concatenate([np.zeros(8_000), rng.uniform(-1, 1, size=16_000)]), "pool", [0])
    return w.commit()


def _sampler(store, seed=0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ViewSampler(store, store.indices("pool"), seed=seed, **kw)


def _draw(batches, n, batch_size=None):
    out = []
    for _ in range(n):
        b = batches.next() if batch_size is None else batches.sample(batch_size)
        out.append((b.track_idx.clone(), b.starts.clone(), torch.stack(b.views).clone()))
    return out


def _same(a, b):
    assert len(a) == len(b)
    for (ta, sa, va), (tb, sb, vb) in zip(a, b):
        assert torch.equal(ta, tb) and torch.equal(sa, sb) and torch.equal(va, vb)


def _live_data_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("prefetch", "gather"))]


@pytest.mark.parametrize("depth,workers", [(0, 1), (0, 3), (1, 1), (3, 2)])
def test_same_batches_as_the_synchronous_sampler(store, depth, workers):
    reference = _draw(_sampler(store), 12, batch_size=32)
    with Prefetcher(_sampler(store), 32, depth=depth, workers=workers) as batches:
        got = _draw(batches, 12)
    _same(got, reference)
    assert not _live_data_threads()


def test_silence_redraws_happen_and_stay_identical(store):
    """The half-silent track is drawn and redrawn: the second generator moves the same way."""
    plain, threaded = _sampler(store), _sampler(store)
    with Prefetcher(threaded, 32, depth=2, workers=4) as batches:
        _same(_draw(batches, 10), _draw(plain, 10, batch_size=32))
        state = batches.state_dict()
    assert plain.state_dict()["redraw_rng"] != _sampler(store).state_dict()["redraw_rng"]  # redraws happened
    assert state == plain.state_dict()


def test_state_is_that_of_the_batches_consumed_and_resumes_exactly(store):
    reference = _draw(_sampler(store), 9, batch_size=32)
    with Prefetcher(_sampler(store), 32, depth=4, workers=2) as batches:
        first = _draw(batches, 5)
        state = batches.state_dict()  # 4 more batches may already wait in the queue
    synchronous = _sampler(store)
    _draw(synchronous, 5, batch_size=32)
    assert state == synchronous.state_dict()
    with Prefetcher(_sampler(store, seed=99), 32, depth=4, workers=2) as resumed:  # another seed: state wins
        resumed.load_state_dict(state)
        rest = _draw(resumed, 4)
    _same(first + rest, reference)


def test_load_state_after_the_first_batch_is_refused(store):
    with Prefetcher(_sampler(store), 32, depth=2) as batches:
        batches.next()
        with pytest.raises(RuntimeError, match="after the first batch"):
            batches.load_state_dict(batches.state_dict())


class _Boom(Exception):
    pass


def test_a_sampling_error_reaches_the_trainer_and_no_thread_is_left(store, monkeypatch):
    sampler = _sampler(store)
    calls = {"n": 0}
    real = sampler.sample

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Boom("bad audio in track 7")
        return real(*a, **kw)

    monkeypatch.setattr(sampler, "sample", failing)
    with pytest.raises(_Boom, match="bad audio in track 7"):
        with Prefetcher(sampler, 32, depth=2, workers=2) as batches:
            for _ in range(5):
                batches.next()
    assert not _live_data_threads()


def test_keyboard_interrupt_stops_every_thread(store):
    with pytest.raises(KeyboardInterrupt):
        with Prefetcher(_sampler(store), 32, depth=3, workers=3) as batches:
            batches.next()
            assert _live_data_threads()  # the producer is up and the queue is filling
            raise KeyboardInterrupt
    assert not _live_data_threads()


def test_wait_time_is_counted_and_settings_are_checked(store):
    with Prefetcher(_sampler(store), 32, depth=0) as batches:
        batches.next()
        assert batches.wait_seconds > 0
    with pytest.raises(ValueError, match="depth must be >= 0"):
        Prefetcher(_sampler(store), 32, depth=-1)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Prefetcher(_sampler(store), 32, workers=0)
    assert auto_workers("cpu", 64) == 1 and auto_workers("cuda", 16) == 8 and auto_workers("cuda", 2) == 1


def test_gather_into_a_given_buffer_equals_a_fresh_one(store):
    idx, starts = np.array([0, 3, 5]), np.array([100, 2_000, 7])
    out = np.full((3, 4_000), np.nan, dtype=np.float32)
    store.segments(idx, starts, 4_000, out=out)
    np.testing.assert_array_equal(out, store.segments(idx, starts, 4_000))
    with pytest.raises(ValueError, match="out must be float32"):
        store.segments(idx, starts, 4_000, out=np.zeros((3, 4_000)))


def test_gathering_on_the_device_gives_the_same_batches(store):
    """`DeviceSamples` (here the CPU stands in for the GPU): the same views, tracks and starts,
    silence redraws included, and the same sampler state."""
    host = _sampler(store)
    with Prefetcher(_sampler(store), 32, depth=2, on=store.on_device("cpu")) as batches:
        _same(_draw(batches, 10), _draw(host, 10, batch_size=32))
        assert batches.state_dict() == host.state_dict()


def test_a_run_gathering_on_the_device_equals_one_on_the_host(smoke_cfg, smoke_store):
    """The trainer with ``train.gather_on=device`` (the CPU as the device) and ``host``: equal weights."""
    from workbench import train
    from workbench.config import apply_overrides

    weights = []
    for where in ("host", "device"):
        cfg = apply_overrides(smoke_cfg, ["train.deterministic=true", "train.steps=2", "diagnostics.every=0",
                                          f"train.gather_on={where}"])
        run = train.pretrain(cfg, name=f"gather-{where}", progress=False)
        weights.append(torch.load(run / "checkpoint.pt", weights_only=True)["model"])
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k
