"""One training step: our trainer vs a per-view loop in the released code's structure.

``python -m workbench.bench train [--profile paper] [--method simclr] [--batch N] [--steps 5]
[--device cpu|cuda|all] [--set SECTION.KEY=VALUE ...] [--vs SECTION.KEY=VALUE ...]``

With ``--vs``, the trainer's step at the profile's settings is timed side by side with the step
at the profile's settings changed by the ``--vs`` overrides (its peer, for example the input the
profile used to have), both through `workbench.train.train_step` with each one's own data path
(``views.crop``: the per-view log-mel, or views cut from the tracks' log-mels), interleaved:
``python -m workbench.bench train --profile demo --device cpu --batch 32 --vs audio.n_mels=128
--vs audio.segment_seconds=4.0 --vs views.crop=samples``.

Both sides start from the same weights (`workbench.train.build_learner`), see the same batch of
waveform views and take one step of the trainer's own `workbench.train.train_step` (forward under
autocast, backward, the method's clipping rule, optimiser step, EMA where the method has one); only
the forward differs:

- ours: `workbench.train.ViewPipeline` (one mel pass over all views) then ``method(views, step)``
  (all views through the backbone in ONE pass, losses without host reads), as in
  `workbench.train.pretrain`;
- reference (deezer/multi-view-ssl-benchmark's structure): for each view, the mel front end and
  the backbone are called separately, and each forward copies the embedding norms to the host
  (``.cpu()``, the release's logging); the loss reads ``.item()`` inside. For SimCLR the
  release's NT-Xent (an (N, N, D) broadcast of cosine similarities, docs/paper.md 7) is used.

A clip is one 4 s view through the backbone. Model FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode`` over our forward + backward (the same model
FLOPs are credited to both sides); MFU = FLOPs / step time / peak. CPU peak: the FLOP/s of a
large float32 matmul measured here (an honest ceiling for this machine); GPU peak: the dense
bf16 figure of the card (H100 SXM 989 TFLOP/s, H200 the same) when known, else a measured
bf16 matmul. On the GPU the trainer side runs in bf16 autocast with channels_last, with and
without ``torch.compile``; the reference side in float32 as released.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from workbench.audio import MelFrontend, TrackMels
from workbench.config import apply_overrides, load_profile
from workbench.methods import build_method
from workbench.train import ViewPipeline, build_learner, train_step

GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def release_nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """The release's NT-Xent: (N, N, D) broadcast of cosines, loss value read with .item()."""
    z = torch.cat([z1, z2])  # (N, D), N = 2B
    n, b = z.shape[0], z1.shape[0]
    sim = F.cosine_similarity(z[:, None, :], z[None, :, :], dim=-1) / temperature  # (N, N) via (N, N, D)
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    pos = torch.cat([torch.arange(b, n), torch.arange(0, b)]).to(z.device)
    loss = F.cross_entropy(sim, pos)
    _ = loss.item()  # the release logs every loss term inside the loss
    return loss


class ReleasedStyleStep(nn.Module):
    """SimCLR per-view loop: front end and backbone once per view, a host copy of the embedding
    norms each time, the release's NT-Xent with ``.item()`` inside. Called like a method,
    ``(waveform views, step) -> (loss, logs)``, so that `workbench.train.train_step` steps it."""

    def __init__(self, method: nn.Module, frontend: nn.Module):
        super().__init__()
        self.method, self.frontend = method, frontend

    def forward(self, waves: list[Tensor], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.method
        zs = []
        for w in waves:
            h = m.encoder(self.frontend(w))
            _ = h.norm(dim=1).mean().cpu()  # the release's embedding-norm logging, every forward
            zs.append(m.projector(h))
        return release_nt_xent(zs[0], zs[1], m.temperature), {}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 8) -> float:
    """FLOP/s of an (n, n) @ (n, n) matmul (n: 2048 on CPU, 8192 on a GPU), best of ``reps``
    (the ceiling, not the load of the moment). On a GPU each rep times 10 back-to-back products
    between CUDA events (no host overhead in the figure); on CPU one product with perf_counter."""
    n = n or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: library initialisation and kernel choice
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                a @ b
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / 10)
        else:
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def step_flops(method: nn.Module, views: list[Tensor], step: int = 1) -> int:
    """Model FLOPs of one training step's forward + backward (``FlopCounterMode``: matmuls and
    convolutions, the teacher's forward included), counted on a copy so that ``method`` and its
    gradients are left as they were."""
    method = copy.deepcopy(method)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = method(views, step)
        loss.backward()
    return counter.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_interleaved(fns: list, steps: int, device: torch.device) -> list[float]:
    """Median seconds per call of each function, after two warm-up calls each, timed in rounds
    (one call of each per round) so that a change of machine load hits every side alike."""
    for fn in fns:
        for s in range(2):
            fn(s + 1)
    times = [[] for _ in fns]
    for r in range(steps):
        for fn, ts in zip(fns, times):
            _sync(device)
            t = time.perf_counter()
            fn(r + 3)
            _sync(device)
            ts.append(time.perf_counter() - t)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def bench_device(cfg, device: torch.device, batch: int, steps: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    waves = [torch.randn(batch, cfg.audio.segment_samples, generator=g).mul_(0.1) for _ in range(cfg.views.n_views)]
    clips = batch * len(waves)
    rows = []
    # FLOPs of one forward + backward of our step (model FLOPs, the same for both sides)
    flops = step_flops(build_method(cfg).to(device), ViewPipeline(cfg, device)(waves, None, device))

    if device.type == "cpu":
        peak, peak_what = matmul_peak(device, torch.float32), "measured fp32 matmul"
    else:
        name = torch.cuda.get_device_name(device)
        known = [v for k, v in GPU_PEAK_BF16.items() if k in name]
        peak, peak_what = (known[0], f"{name} dense bf16") if known else (matmul_peak(device, torch.bfloat16),
                                                                          "measured bf16 matmul")

    # (label, side, train settings): every side is a `train.Learner` built from the config and
    # stepped by `train.train_step`, the trainer's own step; only the forward differs
    variants = [("reference (per-view loop, fp32)", "ref", {})]
    if device.type == "cpu":
        variants += [("ours (fp32)", "ours", {}), ("ours (fp32, channels_last)", "ours", {"channels_last": True})]
    else:
        variants += [("ours (fp32)", "ours", {}),
                     ("ours (bf16, channels_last)", "ours", {"precision": "bf16", "channels_last": True}),
                     ("ours (bf16, channels_last, compile)", "ours",
                      {"precision": "bf16", "channels_last": True, "compile": True})]
    steps_fns = []
    for label, side, settings in variants:
        base = {"channels_last": False, "precision": "fp32", "compile": False}
        learner = build_learner(replace(cfg, train=replace(cfg.train, **{**base, **settings})), device)
        if side == "ref":  # the release's forward: the waveforms go in, the per-view loop does the rest
            learner.model = ReleasedStyleStep(learner.method, MelFrontend.from_config(cfg.audio).to(device))

            def step(s, learner=learner):
                train_step(learner, [w.to(device) for w in waves], s)
        else:
            pipeline = ViewPipeline(cfg, device, settings.get("channels_last", False))

            def step(s, learner=learner, pipeline=pipeline):
                train_step(learner, pipeline(waves, None, device), s)
        steps_fns.append(step)
    for (label, *_), sec in zip(variants, _time_interleaved(steps_fns, steps, device)):
        rows.append({"device": str(device), "variant": label, "step_s": sec, "clips_per_s": clips / sec,
                     "gflop_per_step": flops / 1e9, "mfu": flops / sec / peak,
                     "peak": f"{peak / 1e12:.2f} TFLOP/s ({peak_what})"})
    return rows


def data_path(cfg, device: torch.device, batch: int, channels_last: bool = False, seconds: float = 30.0):
    """``step(s)``'s views as the trainer makes them: ``views.crop="samples"``: each view's
    waveform through `ViewPipeline`; ``"frames"``: cut from ``batch`` tracks' log-mels
    (`TrackMels`, computed here once, as a run computes them when it starts) on the hop grid.
    Returns (views of step s, seconds the track log-mels took)."""
    g = torch.Generator().manual_seed(0)
    pipeline = ViewPipeline(cfg, device, channels_last)
    seg, hop, V = cfg.audio.segment_samples, cfg.audio.hop_length, cfg.views.n_views
    if cfg.views.crop != "frames":
        waves = [torch.randn(batch, seg, generator=g).mul_(0.1) for _ in range(V)]
        return (lambda s: pipeline(waves, None, device)), 0.0
    t = time.perf_counter()
    mels = TrackMels(pipeline.frontend, ((i, torch.randn(int(seconds * cfg.audio.sample_rate), generator=g)
                                          .mul_(0.1).numpy()) for i in range(batch)), cfg.audio.n_frames, device)
    setup = time.perf_counter() - t
    last = (int(seconds * cfg.audio.sample_rate) - seg) // hop
    starts = torch.randint(0, last + 1, (batch, V), generator=g) * hop
    return (lambda s: pipeline.from_mels(mels.crop(torch.arange(batch), starts), None)), setup


def bench_against(cfg, peer, device: torch.device, batch: int, steps: int) -> list[dict]:
    """The trainer's step at ``cfg`` and at ``peer``, interleaved: one row each (step seconds,
    clips/s, GFLOP a step, the one-off seconds of the track log-mels for ``batch`` 30 s tracks)."""
    fns, rows = [], []
    for label, c in (("profile", cfg), ("peer (--vs)", peer)):
        views, setup = data_path(c, device, batch, c.train.channels_last)
        learner = build_learner(replace(c, train=replace(c.train, precision="fp32" if device.type == "cpu"
                                                         else c.train.precision, compile=False)), device)
        flops = step_flops(learner.method, views(0))
        fns.append(lambda s, learner=learner, views=views: train_step(learner, views(s), s))
        rows.append({"variant": label, "input": f"{c.audio.n_mels} mels x {c.audio.n_frames} frames "
                     f"({c.audio.segment_seconds:g} s), crop {c.views.crop}, width {c.encoder.width}",
                     "gflop_per_step": flops / 1e9, "setup_s": setup})
    clips = batch * cfg.views.n_views
    for r, sec in zip(rows, _time_interleaved(fns, steps, device)):
        r.update(step_s=sec, clips_per_s=clips / sec)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m workbench.bench train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="paper", help="model sizes of this profile (default: paper)")
    p.add_argument("--method", default="simclr")
    p.add_argument("--batch", type=int, default=None, help="examples per step (default: 16 on CPU, 256 on GPU)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds after two warm-up steps (median)")
    p.add_argument("--device", default="all", choices=("cpu", "cuda", "all"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--vs", dest="peer", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="time the profile's step side by side with the step under these overrides")
    args = p.parse_args(argv or [])


    if args.method != "simclr":
        raise SystemExit("the per-view reference is written for simclr (the release's contrastive task); "
                         "use --method simclr")
    cfg = apply_overrides(load_profile(args.profile), [f"method.name={args.method}", *args.overrides])
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"training step, {args.method}, profile {args.profile} model: width {cfg.encoder.width}, "
          f"layers {cfg.encoder.layers}, output {cfg.encoder.output_dim}; {cfg.views.n_views} views; "
          f"torch threads {torch.get_num_threads()}")
    for device in devices:
        batch = args.batch or (16 if device.type == "cpu" else 256)
        if args.peer:
            rows = bench_against(cfg, apply_overrides(cfg, args.peer), device, batch, args.steps)
            print(f"\n{device} | batch {batch} x {cfg.views.n_views} views | peer: {' '.join(args.peer)}")
            print(f"{'variant':12s} {'input':52s} {'GFLOP':>6s} {'step s':>7s} {'clips/s':>8s} {'ratio':>6s} "
                  f"{'track log-mels s':>16s}")
            for r in rows:
                print(f"{r['variant']:12s} {r['input']:52s} {r['gflop_per_step']:6.2f} {r['step_s']:7.3f} "
                      f"{r['clips_per_s']:8.1f} {r['clips_per_s'] / rows[1]['clips_per_s']:5.2f}x "
                      f"{r['setup_s']:16.2f}")
            continue
        rows = bench_device(cfg, device, batch, args.steps)
        ref = rows[0]["clips_per_s"]
        print(f"\n{device} | batch {batch} x {cfg.views.n_views} views | {rows[0]['gflop_per_step']:.1f} GFLOP/step "
              f"(forward + backward) | peak {rows[0]['peak']}")
        print(f"{'variant':40s} {'step s':>8s} {'clips/s':>9s} {'MFU':>7s} {'vs ref':>7s}")
        for r in rows:
            print(f"{r['variant']:40s} {r['step_s']:8.3f} {r['clips_per_s']:9.1f} {100 * r['mfu']:6.2f}% "
                  f"{r['clips_per_s'] / ref:6.2f}x")
    if not torch.cuda.is_available():
        print("\n(no GPU here: GPU rows skipped)")


if __name__ == "__main__":
    main()
