"""Pretraining: one loop that reads top to bottom, and the pieces it calls.

``pretrain(cfg)`` trains ``cfg.method.name`` on the views of ``cfg.data`` and writes its run
folder (`workbench.runs`: config, metrics, warnings, checkpoints, DONE, the lock).

One step: take the views sampled in the background (`workbench.data.prefetch`) -> waveform
augmentation on the device -> log-mel
front end -> spectrogram augmentation -> ``method(views, step)`` under autocast -> backward ->
``before_optimizer_step`` (DINO's frozen last layer) -> clip (the method's rule) -> optimiser
step -> ``after_step`` (EMA teacher, DINO center; not on a skipped step). Steps are numbered
1..``train.steps``. Per-step values stay on the device; the host reads them every
``log_every`` steps only (one transfer, `IntervalLog`), which is also where a non-finite loss is
detected and named by its step. A "clip" in clips/s is one 4 s view through the student
backbone (B x V per step, all ranks).

Distributed (``torchrun``): one process per device, DistributedDataParallel (`dist.wrap_model`);
every rank draws the same global batch and keeps its slice (`ViewSampler`, no track on two
ranks in one step); each rank has its own augmentation generator.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from workbench import dist, runs
from workbench.audio import MelFrontend, TrackMels
from workbench.augment import build_chain
from workbench.config import AUGMENT_SEED_STRIDE, CLIP_RULES, PRECISIONS, RunConfig, to_dict
from workbench.data.datasets import open_dataset, pretrain_indices
from workbench.data.prefetch import Prefetcher, auto_workers
from workbench.data.store import DeviceSamples
from workbench.data.views import ViewSampler
from workbench.diagnostics import CollapseMonitor, compute_diagnostics, held_out_batch, probe_batch
from workbench.methods import Method, build_method
from workbench.optim import build_optimizer, learning_rate, set_learning_rate


# ----------------------------------------------------------------------------------- the loop
def pretrain(cfg: RunConfig, name: str | None = None, resume: bool = False, progress: bool = True,
             callback: Callable[[dict], None] | None = None) -> Path:
    """Train ``cfg.method.name`` and return its run folder (`workbench.runs`).

    ``resume=True`` continues from ``checkpoint.pt`` (model, optimiser, EMA teacher, DINO center,
    step and every generator restored, so the result equals an uninterrupted run on CPU).
    ``callback(row)`` is called with each metrics row on the main process (live plots); an
    exception raised there stops the run like a kill would (no final checkpoint).
    """
    tc = cfg.train
    dist.init_from_env(tc.device)
    device = runs.device(cfg)
    check_train_config(cfg, device, dist.world_size())
    with torch_flags(device, tc.deterministic, tc.threads), \
            runs.RunFolder(runs.runs_dir() / (name or runs.run_name(cfg))) as folder, \
            TrainingData(cfg, device) as data:
        ckpt = folder.open(cfg, resume, dist.world_size())
        learner = build_learner(cfg, device)
        method = learner.method
        start = restore(ckpt, learner, data)
        monitor = TrainingMonitor(cfg, folder, data, device) if cfg.diagnostics.every else None
        log = IntervalLog(folder, callback, device)
        bar = tqdm(total=tc.steps, initial=start, desc=cfg.method.name, dynamic_ncols=True,
                   disable=not (progress and dist.is_main()))
        stopped = None
        method.train()
        for step in range(start + 1, tc.steps + 1):
            lr = set_learning_rate(learner.optimizer, learning_rate(step, tc.lr, tc.warmup_steps, tc.steps))
            loss, logs, grad_norm, skipped = train_step(learner, data.next_views(), step)
            log.add(logs, loss, grad_norm, skipped, clips=data.clips_per_step)
            last = step == tc.steps
            if step % tc.log_every == 0 or step % tc.checkpoint_every == 0 or last:
                log.flush(step, lr, method.schedule_state(), bar)
            paused = time.perf_counter()  # diagnostics and checkpoints do not count in clips/s
            if monitor is not None and (step % cfg.diagnostics.every == 0 or last):
                stopped = monitor.check(step, method, learner.precision)
            if step % tc.checkpoint_every == 0 or last or stopped:
                folder.save_checkpoint(checkpoint_state(cfg, step, learner, data))
            log.exclude(time.perf_counter() - paused)
            bar.update(1)
            if stopped:
                break
        bar.close()
        folder.finish(stopped)
    return folder.dir


@dataclass
class Learner:
    """What one training step touches: the method, the module the forward goes through (the
    method itself, or its DistributedDataParallel wrapper), the optimiser, the precision, and the
    clipping rule (``train.grad_clip``, ``train.clip``) and non-finite policy (``train.nonfinite``)."""

    method: Method
    model: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    grad_clip: float
    clip: str = "auto"
    skip_nonfinite: bool = False


def build_learner(cfg: RunConfig, device: torch.device, compile_backend: str = "inductor") -> Learner:
    """The `Learner` of ``cfg`` on ``device``: a fresh method (channels_last when
    ``train.channels_last``: it also pays on CPU through oneDNN, 1.5x on the paper model, python
    -m workbench.bench train), its optimiser, the precision, the DDP wrapper under torchrun, and
    the encoder compiled when ``train.compile``."""
    tc = cfg.train
    method = build_method(cfg).to(device)
    if tc.channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(method, tc.optimizer, tc.lr, tc.weight_decay)
    model = dist.wrap_model(method, device)
    if tc.compile:
        method.encoder.compile(backend=compile_backend)
    return Learner(method, model, optimizer, Precision(tc.precision, device), tc.grad_clip, tc.clip,
                   skip_nonfinite=tc.nonfinite == "skip")


def train_step(learner: Learner, views: list[Tensor], step: int) -> tuple[Tensor, dict[str, Tensor], Tensor, bool]:
    """One optimisation step on V mel views (B, 1, F, T): ``model(views, step)`` under autocast ->
    backward -> ``before_optimizer_step`` (DINO's frozen last layer) -> clip (the method's rule)
    -> optimiser step -> ``after_step`` (EMA teacher, DINO center; not on a skipped step).
    Returns (loss, logged terms, gradient norm before clipping, skipped), all on the device: no
    host read. The trainer and both step benchmarks (`workbench.bench.train`, `.gpu`) call it."""
    method, optimizer, precision = learner.method, learner.optimizer, learner.precision
    with precision.autocast():
        loss, logs = learner.model(views, step)
    optimizer.zero_grad(set_to_none=True)
    precision.backward(loss, optimizer)
    method.before_optimizer_step(step)
    grad_norm = clip_gradients(method, learner.grad_clip, learner.clip)
    skipped = precision.step(optimizer, loss, grad_norm, skip_nonfinite=learner.skip_nonfinite)
    if not skipped:
        method.after_step(step)
    return loss, logs, grad_norm, skipped


# ----------------------------------------------------------------------------------- set-up
def check_train_config(cfg: RunConfig, device: torch.device, world: int) -> None:
    """Refuse settings the loop cannot honour, each with its value and what is expected."""
    tc = cfg.train
    if tc.batch_size % world:
        raise ValueError(f"train.batch_size {tc.batch_size} is not divisible by the {world} processes")
    if tc.nonfinite not in ("stop", "skip"):
        raise ValueError(f"train.nonfinite is {tc.nonfinite!r}; expected 'stop' or 'skip'")
    if tc.precision not in PRECISIONS:
        raise ValueError(f"train.precision is {tc.precision!r}; expected one of {', '.join(PRECISIONS)}")
    if tc.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"train.precision fp16 needs a CUDA device (GradScaler); this run is on {device.type}: "
                         f"use fp32 or bf16")
    if tc.gather_on not in ("auto", "device", "host"):
        raise ValueError(f"train.gather_on is {tc.gather_on!r}; expected auto, device or host")
    if tc.clip not in CLIP_RULES:
        raise ValueError(f"train.clip is {tc.clip!r}; expected one of {', '.join(CLIP_RULES)}")
    if cfg.views.crop not in ("samples", "frames"):
        raise ValueError(f"views.crop is {cfg.views.crop!r}; expected 'samples' or 'frames'")
    if cfg.views.crop == "frames" and build_chain(cfg.views.augment, cfg.audio.sample_rate).wave_transforms:
        raise ValueError(f"views.crop 'frames' cuts views from each track's log-mel, but the chain "
                         f"{cfg.views.augment!r} augments waveforms; use views.crop=samples with it")


@contextmanager
def torch_flags(device: torch.device, deterministic: bool, threads: int = 0) -> Iterator[None]:
    """Process-wide torch flags for a run, restored afterwards (the caller's process is left
    as found): deterministic algorithms, ``threads`` CPU threads when set. A collapsing network
    produces denormal floats, which make CPU BatchNorm and
    matmuls ~6x slower (a DINO run without centering: 88 s -> 15 s); flushing them changes
    nothing measurable in the results."""
    was_deterministic, was_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)
        if device.type == "cpu":
            torch.set_flush_denormal(False)


class TrainingData:
    """The store, this rank's slice of each global batch (sampled ``train.prefetch`` batches
    ahead in background threads, `workbench.data.prefetch`), the augmentation generator and the
    on-device view pipeline: ``next_views()`` gives the V mel views (B/W, 1, F, T) of a step.
    ``wait_seconds``: the time steps waited for their batch. Use with ``with`` (stops the threads)."""

    def __init__(self, cfg: RunConfig, device: torch.device):

        rank, world = dist.rank(), dist.world_size()
        self.store = open_dataset(cfg)
        sampler = ViewSampler.from_config(self.store, pretrain_indices(self.store, cfg), cfg, rank=rank, world=world)
        workers = cfg.train.data_workers or auto_workers(device.type)
        on = self.store.on_device(device) if gather_on_device(cfg.train.gather_on, self.store, device) else None
        self.batches = Prefetcher(sampler, cfg.train.batch_size, cfg.train.prefetch, workers,
                                  pin=device.type == "cuda" and on is None, on=on)
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed + AUGMENT_SEED_STRIDE * (rank + 1))
        self.pipeline = ViewPipeline(cfg, device, cfg.train.channels_last)
        self.device = device
        # views.crop="frames": every pretraining track's log-mel once, views cut on the hop grid
        self.track_mels = None if cfg.views.crop != "frames" else TrackMels(
            self.pipeline.frontend, ((int(i), self.store.audio(int(i))) for i in sampler.indices),
            cfg.audio.n_frames, device)
        self.clips_per_step = cfg.train.batch_size * cfg.views.n_views

    @property
    def wait_seconds(self) -> float:
        return self.batches.wait_seconds

    def next_views(self) -> list[Tensor]:
        batch = self.batches.next()
        if self.track_mels is not None:
            return self.pipeline.from_mels(self.track_mels.crop(batch.track_idx, batch.starts), self.generator)
        return self.pipeline(batch.views, self.generator, self.device)

    def rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "augment": self.generator.get_state(),
                 "sampler": json.dumps(self.batches.state_dict(), default=int)}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        self.generator.set_state(state["augment"])
        self.batches.load_state_dict(json.loads(state["sampler"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])

    def __enter__(self) -> "TrainingData":
        return self

    def __exit__(self, *exc) -> None:
        self.batches.close()


def gather_on_device(gather_on: str, store, device: torch.device) -> bool:
    """``train.gather_on``: "device", "host", or "auto" = device on CUDA when the store's samples
    take under a quarter of the free memory (the rest is the model's)."""
    if gather_on != "auto":
        return gather_on == "device"

    return device.type == "cuda" and DeviceSamples.bytes_needed(store) < torch.cuda.mem_get_info(device)[0] / 4


class Precision:
    """fp32 | bf16 (autocast) | fp16 (autocast + GradScaler, CUDA): autocast, backward, step."""

    def __init__(self, precision: str, device: torch.device):
        self.device, self.precision = device, precision
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)  # clipping sees true gradients

    def step(self, optimizer: torch.optim.Optimizer, loss: Tensor, grad_norm: Tensor, skip_nonfinite: bool) -> bool:
        """Optimiser step; True when the step was skipped (a non-finite loss or gradient under
        ``nonfinite=skip``, as GradScaler skips; one host read, opt-in; or fp16's scaler)."""
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            return self.scaler.get_scale() < scale
        if skip_nonfinite and not bool(torch.isfinite(loss.detach() + grad_norm)):
            return True
        optimizer.step()
        return False


def restore(ckpt: dict | None, learner: Learner, data: TrainingData) -> int:
    """Load a checkpoint into the run's state; the step to continue after (0 for a fresh run)."""
    if ckpt is None:
        return 0
    method = learner.method
    method.load_state_dict(ckpt["model"])
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    if "scaler" in ckpt:
        learner.precision.scaler.load_state_dict(ckpt["scaler"])
    data.set_rng_state(ckpt["rng"][dist.rank()])
    method.step = int(ckpt["step"])
    return method.step


def checkpoint_state(cfg: RunConfig, step: int, learner: Learner, data: TrainingData) -> dict:
    """Everything a resume needs; every rank's generators (a collective: all ranks call it)."""
    return {"config": to_dict(cfg), "step": step, "world_size": dist.world_size(),
            "model": learner.method.state_dict(), "optimizer": learner.optimizer.state_dict(),
            "scaler": learner.precision.scaler.state_dict(), "rng": dist.gather_objects(data.rng_state())}


# ----------------------------------------------------------------------------------- gradients
def clip_gradients(method: Method, max_norm: float, rule: str = "auto") -> Tensor:
    """Clip by ``rule`` ("auto": the method's, `Method.clip_rule`) and return the global
    gradient norm before clipping (logged as grad_norm). "global": one norm over every
    parameter (torch.nn.utils.clip_grad_norm_); "per-parameter": each parameter's gradient to
    norm ``max_norm`` on its own (DINO's ``utils.clip_gradients``: scale max_norm / (norm + 1e-6)
    where below 1); "none", or ``max_norm`` <= 0: nothing clipped."""
    rule = method.clip_rule if rule == "auto" else rule
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    total = torch.linalg.vector_norm(torch.stack(norms))
    if max_norm > 0 and rule == "global":
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    elif max_norm > 0 and rule == "per-parameter":
        for g, n in zip(grads, norms):
            g.mul_(torch.clamp(max_norm / (n + 1e-6), max=1.0))
    return total


# ----------------------------------------------------------------------------------- data on device
class ViewPipeline(nn.Module):
    """ViewBatch waveforms (V x (B, S)) -> V mel views (B, 1, F, T) on the device:
    waveform augmentation (per view, each its own random parameters) -> one mel front-end pass
    over all views -> spectrogram augmentation (per view)."""

    def __init__(self, cfg: RunConfig, device: torch.device, channels_last: bool = False):
        super().__init__()

        self.frontend = MelFrontend.from_config(cfg.audio).to(device)
        self.chain = build_chain(cfg.views.augment, cfg.audio.sample_rate).to(device)
        self.channels_last = channels_last

    @torch.no_grad()
    def forward(self, waves: list[Tensor], generator: torch.Generator | None, device: torch.device) -> list[Tensor]:
        B = waves[0].shape[0]
        waves = [self.chain.wave(w.to(device, non_blocking=True), generator) for w in waves]
        mel = self.frontend(torch.cat(waves, dim=0))  # (V*B, 1, F, T)
        return self.from_mels(list(mel.split(B, dim=0)), generator)

    @torch.no_grad()
    def from_mels(self, mels: list[Tensor], generator: torch.Generator | None) -> list[Tensor]:
        """V log-mel views (B, 1, F, T) -> spectrogram augmentation (per view) -> the model's layout."""
        views = [self.chain.spec(m, generator) for m in mels]
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views


# ----------------------------------------------------------------------------------- logs, diagnostics
class IntervalLog:
    """Per-step values kept on the device; every log interval one all-reduce and one host read
    give a metrics row (means over the steps taken), and a non-finite loss or gradient stops the
    run naming its step and the last good checkpoint."""

    def __init__(self, folder: runs.RunFolder, callback: Callable[[dict], None] | None, device: torch.device):
        self.folder, self.callback = folder, callback
        self._flags = torch.tensor([0.0, 1.0], device=device)  # "skipped" values: no host copy per step
        self.window: list[dict[str, Tensor]] = []
        self.t0, self.clips = time.perf_counter(), 0

    def add(self, logs: dict[str, Tensor], loss: Tensor, grad_norm: Tensor, skipped: bool, clips: int) -> None:
        self.window.append({**logs, "loss": loss.detach(), "grad_norm": grad_norm.detach(),
                            "skipped": self._flags[int(skipped)]})
        self.clips += clips

    def exclude(self, seconds: float) -> None:
        """Time spent outside training steps (diagnostics, checkpoints): not counted in clips/s."""
        self.t0 += seconds

    def flush(self, step: int, lr: float, schedule: dict[str, float], bar) -> dict:
        keys = list(self.window[0])
        table = dist.all_reduce_mean(torch.stack([torch.stack([w[k].float() for w in self.window]) for k in keys]))
        table = table.cpu().numpy()  # (n_keys, n_steps): the only host read of the interval
        skipped = table[keys.index("skipped")] > 0
        finite = np.isfinite(table[[keys.index("loss"), keys.index("grad_norm")]]) | skipped  # (2, n_steps)
        if not finite.all():
            i = int(np.flatnonzero(~finite.all(axis=0))[0])
            what = "loss" if not finite[0, i] else "gradient"
            terms = ", ".join(f"{k}={table[j, i]:.4g}" for j, k in enumerate(keys))
            raise FloatingPointError(f"non-finite {what} at step {step - len(self.window) + 1 + i} of run "
                                     f"{self.folder.dir.name}: {terms}; last good checkpoint kept: "
                                     f"{self.folder.last_good()}")
        ok = ~skipped  # means over the steps that were taken
        row = {"kind": "train", "step": step,
               **{k: float(table[j][ok].mean()) if ok.any() else float("nan") for j, k in enumerate(keys)},
               "skipped": int(skipped.sum()), "lr": lr, **schedule,
               "clips_per_s": self.clips / max(time.perf_counter() - self.t0, 1e-9), "time": time.time()}
        self.window, self.t0, self.clips = [], time.perf_counter(), 0
        self.folder.log(row)
        if dist.is_main():
            bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}")
            if self.callback is not None:
                self.callback(row)
        return row


class TrainingMonitor:
    """Collapse statistics on a fixed held-out batch (`workbench.diagnostics`), written as
    ``kind: "diagnostics"`` rows; warnings go to warnings.jsonl; ``check`` returns a stop
    message when ``diagnostics.stop_on_collapse`` and a warning fired."""

    def __init__(self, cfg: RunConfig, folder: runs.RunFolder, data: TrainingData, device: torch.device):

        self.cfg, self.folder = cfg, folder
        self.monitor = CollapseMonitor(cfg.diagnostics, folder.dir.name)
        batch = held_out_batch(cfg, data.store)
        mel = data.pipeline.frontend(torch.cat([w.to(device) for w in batch.views], dim=0))
        self.views, self.tracks = list(mel.split(batch.views[0].shape[0], dim=0)), batch.track_idx
        probe = probe_batch(cfg, data.store)  # the online probe's labeled tracks (train / valid)
        self.probe = None if probe is None else (
            data.pipeline.frontend(torch.from_numpy(probe[0]).to(device)), probe[1],
            data.pipeline.frontend(torch.from_numpy(probe[2]).to(device)), probe[3])

    def check(self, step: int, method: Method, precision: Precision) -> str | None:

        with precision.autocast():  # no_grad, modes and BatchNorm buffers are handled (and restored) there
            stats = {k: float(v) for k, v in compute_diagnostics(method, self.views, self.tracks,
                                                                    probe=self.probe).items()}
        found = self.monitor.check(step, stats)  # prints them
        self.folder.log({"kind": "diagnostics", "step": step, **stats})
        for w in found:
            self.folder.warn({"step": step, **w})
        if found and self.cfg.diagnostics.stop_on_collapse:
            return f"stopped at step {step}: collapse ({found[0].get('message', found[0])})"
        return None
