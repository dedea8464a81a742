"""``python -m workbench.bench data [--profile paper] [--store-profile demo] [--batches 12] [--steps 8]``

The data path alone, against the compute it must feed.

1. Sampling + gathering (+ pinning on a CUDA host): clips/s that ``ViewSampler.sample`` delivers
   at the profile's batch size and views (paper: 256 x 2 views of 4 s), with 1, 2, ... gathering
   threads (`workbench.data.prefetch`), on the embedded corpus of ``--store-profile`` (built
   if missing). Median over ``--batches`` batches, after one warm-up batch (page cache).
2. The rate to feed: model FLOPs of one clip's forward + backward in the profile's model
   (``FlopCounterMode``, `workbench.bench.train.step_flops`) turned into the clips/s of one
   H100-class GPU (989 TFLOP/s dense bf16, NVIDIA's H100 SXM datasheet; the H200 has the same)
   at an assumed model-FLOP utilisation of 40 % (``--mfu``), about the best a small ResNet
   reaches in bf16; the prepared GPU check (``python -m workbench.bench gpu``) measures the real
   compute rate, which replaces this estimate once it has run. Goal: the data path at least 3x
   that rate.
3. Overlap on this machine: the demo profile's real training step on CPU with the batch sampled
   on the training thread (``train.prefetch=0``) and in the background (``train.prefetch=2``):
   step time and the share of it spent waiting for data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from workbench.bench.train import step_flops
from workbench.config import announce, apply_overrides, for_method, load_profile
from workbench.data.datasets import open_dataset, pretrain_indices
from workbench.data.views import ViewSampler
from workbench.methods import build_method
from workbench.train import TrainingData, build_learner, train_step

H100_BF16_DENSE = 989e12  # FLOP/s, NVIDIA H100 SXM datasheet (dense, no sparsity); H200: the same chip


def _median_seconds(fn, batches: int, sync=lambda: None) -> float:
    fn()  # warm-up: page cache, pinned-memory pool, device copy
    times = []
    for _ in range(batches):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sampler_rates(cfg, store, batches: int, threads: list[int], pin: bool) -> list[dict]:
    """clips/s of the host path per thread count, of the index draw alone (the host's whole share
    when gathering on the device), and of the device gather on CUDA."""
    rows = []
    batch, views = cfg.train.batch_size, cfg.views.n_views

    def sampler():
        return ViewSampler.from_config(store, pretrain_indices(store, cfg), cfg)

    for workers in threads:
        s, pool = sampler(), ThreadPoolExecutor(workers) if workers > 1 else None
        sec = _median_seconds(lambda: s.sample(batch, pool, workers, pin), batches)
        if pool is not None:
            pool.shutdown()
        rows.append({"path": f"host, {workers} thread{'s' * (workers > 1)}" + (", pinned" if pin else ""),
                     "batch_ms": 1e3 * sec, "clips_per_s": batch * views / sec})
    s = sampler()
    sec = _median_seconds(lambda: s._placements(s._tracks(batch), s.rng), batches)
    rows.append({"path": "host: index draw alone", "batch_ms": 1e3 * sec, "clips_per_s": batch * views / sec})
    if torch.cuda.is_available():
        s, on = sampler(), store.on_device("cuda")
        sec = _median_seconds(lambda: s.sample(batch, on=on), batches, torch.cuda.synchronize)
        rows.append({"path": "device gather (cuda)", "batch_ms": 1e3 * sec, "clips_per_s": batch * views / sec})
    return rows


def flops_per_clip(cfg) -> float:
    """Model FLOPs of one clip (one view through the backbone) in a forward + backward, counted on
    a batch of 4 examples (FLOPs are linear in the batch; the projector and loss are included)."""
    small = for_method(cfg, cfg.method.name)
    method = build_method(small)
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(4, 1, cfg.audio.n_mels, cfg.audio.n_frames, generator=g) * 10 - 40
             for _ in range(cfg.views.n_views)]
    return step_flops(method, views) / (4 * cfg.views.n_views)


def overlap(store_cfg, steps: int) -> list[dict]:
    """The demo's training step on this machine, sampled on the training thread vs in the background."""
    rows = []
    for prefetch in (0, 2):
        cfg = apply_overrides(store_cfg, [f"train.prefetch={prefetch}", "train.device=cpu"])
        device = torch.device("cpu")
        learner = build_learner(cfg, device)
        with TrainingData(cfg, device) as data:
            times, waits = [], []
            for step in range(1, steps + 2):
                wait0, t = data.wait_seconds, time.perf_counter()
                train_step(learner, data.next_views(), step)
                if step > 1:  # the first step warms up (and starts the producer)
                    times.append(time.perf_counter() - t)
                    waits.append(data.wait_seconds - wait0)
        step_s, wait_s = statistics.median(times), statistics.median(waits)
        rows.append({"prefetch": prefetch, "step_ms": 1e3 * step_s, "wait_ms": 1e3 * wait_s,
                     "wait_share": wait_s / step_s, "batch": cfg.train.batch_size})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m workbench.bench data", description=__doc__.splitlines()[2])
    p.add_argument("--profile", default="paper", help="batch size, views and model of this profile (default paper)")
    p.add_argument("--store-profile", default="demo",
                   help="the embedded corpus read (default demo's, built if missing)")
    p.add_argument("--batches", type=int, default=12, help="timed batches per setting (median)")
    p.add_argument("--steps", type=int, default=8, help="timed training steps per setting in the overlap check")
    p.add_argument("--threads", default=None, help="comma-separated gathering threads (default 1 and every core)")
    p.add_argument("--mfu", type=float, default=0.40, help="assumed GPU model-FLOP utilisation for the rate to feed")
    args = p.parse_args(argv)


    cfg, store_cfg = load_profile(args.profile), load_profile(args.store_profile)
    cfg = type(cfg)(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "data": store_cfg.data,
                       "corpus": store_cfg.corpus})
    announce(store_cfg, "bench data")
    store = open_dataset(store_cfg)
    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})
    pin = torch.cuda.is_available()
    print(f"data path: batch {cfg.train.batch_size} x {cfg.views.n_views} views of {cfg.audio.segment_seconds} s "
          f"(profile {args.profile}) from {store}; {cores} cores; pinned memory: {'yes' if pin else 'no (no CUDA)'}")
    rates = sampler_rates(cfg, store, args.batches, threads, pin)
    print(f"{'path':<32} {'ms/batch':>10} {'clips/s':>12}")
    for r in rates:
        print(f"{r['path']:<32} {r['batch_ms']:>10.2f} {r['clips_per_s']:>12,.0f}")
    if not torch.cuda.is_available():
        print("device gather: no CUDA here (the prepared GPU check measures it: python -m workbench.bench gpu)")

    per_clip = flops_per_clip(cfg)
    need = args.mfu * H100_BF16_DENSE / per_clip
    host = max(r["clips_per_s"] for r in rates if r["path"].startswith("host,"))
    draw = next(r["clips_per_s"] for r in rates if r["path"].startswith("host: index"))
    print(f"\nrate to feed: {per_clip / 1e9:.3f} GFLOP per clip forward + backward (profile {args.profile} model); "
          f"one H100-class GPU at {args.mfu:.0%} of {H100_BF16_DENSE / 1e12:.0f} TFLOP/s = {need:,.0f} clips/s")
    print(f"host gather here: {host:,.0f} clips/s = {host / need:.3f}x that rate (goal 3x): copying audio on host "
          f"cores cannot feed the GPU ({3 * need * cfg.audio.segment_samples * 6 / 1e9:,.0f} GB/s of host memory "
          f"traffic at 3x, int16 read + float32 written)")
    print(f"gathering on the device leaves the host the index draw: {draw:,.0f} clips/s = {draw / need:.1f}x that "
          f"rate; the device reads {3 * need * cfg.audio.segment_samples * 2 / 1e9:,.0f} GB/s at 3x, "
          f"{3 * need * cfg.audio.segment_samples * 2 / 4.8e12:.1%} of an H200's 4.8 TB/s")

    print(f"\noverlap on this CPU (profile {args.store_profile}, real training step, batch "
          f"{store_cfg.train.batch_size}):")
    print(f"{'prefetch':>9} {'step ms':>9} {'data wait ms':>13} {'wait share':>11}")
    for r in overlap(store_cfg, args.steps):
        print(f"{r['prefetch']:>9} {r['step_ms']:>9.0f} {r['wait_ms']:>13.1f} {r['wait_share']:>11.1%}")
