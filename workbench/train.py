"""Pretraining: one loop that reads top to bottom, and the run folders it writes.

``pretrain(cfg)`` trains ``cfg.method.name`` on the views of ``cfg.data`` and writes
``data_dir()/runs/<run_name(cfg)>/``:

- ``config.json``: the run config (`workbench.config.to_dict`); also inside every checkpoint;
- ``metrics.jsonl``: one row per log interval (``kind: "train"``: step, loss and its terms,
  lr, EMA momentum, temperatures, grad_norm, clips_per_s) and per diagnostics call
  (``kind: "diagnostics"``); ``warnings.jsonl``: collapse warnings;
- ``checkpoint.pt``: the latest state (model with EMA teacher and DINO center, optimiser,
  step, every random generator), written atomically every ``checkpoint_every`` steps and at
  the end; ``DONE`` once finished; ``lock`` while a process writes the folder.

One step: sample views (numpy sampler) -> waveform augmentation on the device -> log-mel front
end -> spectrogram augmentation -> ``method(views, step)`` under autocast -> backward -> clip ->
optimiser step -> ``after_step`` (EMA). Steps are numbered 1..``train.steps``. Per-step values
stay on the device; the host reads them every ``log_every`` steps only (one transfer), which is
also where a non-finite loss is detected and named by its step. A "clip" in clips/s is one 4 s
view through the student backbone (B x V per step, all ranks).

Distributed (``torchrun``): one process per device, DistributedDataParallel (gloo on CPU,
nccl on CUDA), each rank draws B / W examples with its own generators; BatchNorm is converted
to SyncBatchNorm on CUDA (global-batch statistics, as one process); on CPU (gloo) PyTorch has
no SyncBatchNorm, so BatchNorm statistics are per rank there (tests/test_dist.py compares with
exactly those semantics).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from workbench import dist
from workbench.config import RunConfig, config_hash, data_dir, from_dict, to_dict
from workbench.methods import Method, build_method

TRAINING_SECTIONS = ("audio", "corpus", "data", "views", "encoder", "method", "train", "diagnostics")


# ----------------------------------------------------------------------------------- run folders
def run_name(cfg: RunConfig) -> str:
    """``<profile>-<dataset>-<method>-<fidelity>-<hash>``; the hash covers what changes training
    (not the probe or evaluation settings, so evaluating differently reuses the run)."""
    dataset = cfg.data.dataset + (f"-{cfg.data.variant}" if cfg.data.variant else "")
    blob = json.dumps({k: to_dict(getattr(cfg, k)) for k in TRAINING_SECTIONS}, sort_keys=True).encode()
    return f"{cfg.profile}-{dataset}-{cfg.method.name}-{cfg.method.fidelity}-{hashlib.sha256(blob).hexdigest()[:10]}"


def runs_dir() -> Path:
    return data_dir() / "runs"


def ensure_run(cfg: RunConfig, progress: bool = True, callback: Callable[[dict], None] | None = None) -> Path:
    """The finished run folder of ``cfg``: reused when it has ``DONE``, resumed when it has a
    checkpoint, trained otherwise."""
    run_dir = runs_dir() / run_name(cfg)
    if (run_dir / "DONE").exists():
        return run_dir
    return pretrain(cfg, resume=(run_dir / "checkpoint.pt").exists(), progress=progress, callback=callback)


def load_run(run_dir: str | os.PathLike) -> tuple[RunConfig, Method]:
    """(config, method with the weights of the latest checkpoint), on CPU, in eval mode."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in run folder {run_dir}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = from_dict(ckpt["config"])
    method = build_method(cfg)
    method.load_state_dict(ckpt["model"])
    method.step = int(ckpt["step"])
    return cfg, method.eval()


def load_encoder(run_dir: str | os.PathLike) -> tuple[nn.Module, RunConfig]:
    """(student backbone in eval mode, config) of a run folder."""
    cfg, method = load_run(run_dir)
    return method.encoder.eval(), cfg


def read_metrics(run_dir: str | os.PathLike):
    """metrics.jsonl as a pandas DataFrame (rows of every ``kind``; empty if none yet)."""
    import pandas as pd

    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


class RunLockedError(RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(run_dir: Path) -> Path:
    """Create ``run_dir/lock`` (pid, host) exclusively; a lock of a dead pid on this host is stale."""
    lock = run_dir / "lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                owner = {}
            pid, host = int(owner.get("pid", -1)), owner.get("host")
            if host == me["host"] and pid > 0 and not _pid_alive(pid):
                warnings.warn(f"removing stale lock of dead process {pid} in {run_dir}")
                lock.unlink(missing_ok=True)
                continue
            raise RunLockedError(f"run folder {run_dir} is locked by process {pid} on {host} "
                                 f"(file {lock}); another run is writing it. Wait for it, or delete "
                                 f"the lock if that process is gone.") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock
    raise RunLockedError(f"could not take the lock of {run_dir}")


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------------- optimisation
def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step <= warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as in the BYOL / Barlow Twins recipes: SGD with momentum whose
    update of each matrix is scaled by the trust ratio ||w|| / ||g + wd w||; vectors (biases,
    norms) get neither weight decay nor adaptation (their group has ``weight_decay=0``)."""

    def __init__(self, params, lr: float = 0.1, weight_decay: float = 0.0, momentum: float = 0.9,
                 eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim >= 2:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))
                    d = d.mul(trust)
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])


def build_optimizer(method: nn.Module, optimizer: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or LARS; weight decay only on parameters with two or more dimensions (nanoGPT)."""
    params = [p for p in method.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizers = {"adamw": lambda: torch.optim.AdamW(groups, lr=lr),
                  "lars": lambda: LARS(groups, lr=lr)}
    if optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(optimizers)}")
    return optimizers[optimizer]()


# ----------------------------------------------------------------------------------- data on device
class ViewPipeline(nn.Module):
    """ViewBatch waveforms (V x (B, S)) -> V mel views (B, 1, F, T) on the device:
    waveform augmentation (per view, each its own random parameters) -> one mel front-end pass
    over all views -> spectrogram augmentation (per view)."""

    def __init__(self, cfg: RunConfig, device: torch.device, channels_last: bool = False):
        super().__init__()
        from workbench.audio import MelFrontend
        from workbench.augment import build_chain

        self.frontend = MelFrontend.from_config(cfg.audio).to(device)
        self.chain = build_chain(cfg.views.augment, cfg.audio.sample_rate).to(device)
        self.channels_last = channels_last

    @torch.no_grad()
    def forward(self, waves: list[Tensor], generator: torch.Generator | None, device: torch.device) -> list[Tensor]:
        B = waves[0].shape[0]
        waves = [self.chain.wave(w.to(device, non_blocking=True), generator) for w in waves]
        mel = self.frontend(torch.cat(waves, dim=0))  # (V*B, 1, F, T)
        views = [self.chain.spec(m, generator) for m in mel.split(B, dim=0)]
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views


def _device(cfg: RunConfig) -> torch.device:
    if cfg.train.device == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = cfg.train.device
    if name == "cuda" and dist.is_distributed():
        return torch.device("cuda", dist.local_rank())
    return torch.device(name)


def _held_out_views(cfg: RunConfig, store, pipeline: ViewPipeline, device: torch.device) -> tuple[list[Tensor], Tensor]:
    """A fixed batch of un-augmented mel views for diagnostics (validation tracks when the store
    has them, else pretraining tracks), drawn with its own seed so training draws are untouched."""
    from workbench.data import pretrain_indices
    from workbench.data.views import ViewSampler

    valid = store.indices("valid") if "valid" in set(store.tracks["split"]) else np.array([], dtype=np.int64)
    idx = valid if len(valid) else pretrain_indices(store)
    sampler = ViewSampler(store, idx, n_views=cfg.views.n_views, duration=cfg.audio.segment_seconds,
                          min_gap=cfg.views.min_gap, reject_silence=cfg.views.reject_silence,
                          silence_db=cfg.views.silence_db, seed=cfg.train.seed + 12_345)
    batch = sampler.sample(cfg.diagnostics.held_out_batch)
    mel = pipeline.frontend(torch.cat([w.to(device) for w in batch.views], dim=0))
    return list(mel.split(batch.views[0].shape[0], dim=0)), batch.track_idx


def _diagnostics_hooks(cfg: RunConfig, name: str):
    """(compute_diagnostics, monitor) from workbench.diagnostics, or (None, None) if absent."""
    try:
        from workbench.diagnostics import CollapseMonitor, compute_diagnostics
    except ImportError as err:
        warnings.warn(f"workbench.diagnostics unavailable ({err}); training without diagnostics")
        return None, None
    return compute_diagnostics, CollapseMonitor(cfg.diagnostics, name)


def _rng_state(sampler, generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "augment": generator.get_state(),
             "sampler": json.dumps(sampler.state_dict(), default=int)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict, sampler, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["augment"])
    sampler.load_state_dict(json.loads(state["sampler"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------------- the loop
def pretrain(cfg: RunConfig, name: str | None = None, resume: bool = False, progress: bool = True,
             callback: Callable[[dict], None] | None = None) -> Path:
    """Train ``cfg.method.name`` and return its run folder (see the module docstring).

    ``resume=True`` continues from ``checkpoint.pt`` (model, optimiser, EMA teacher, DINO center,
    step and every generator restored, so the result equals an uninterrupted run on CPU).
    ``callback(row)`` is called with each metrics row on the main process (live plots); an
    exception raised there stops the run like a kill would (no final checkpoint).
    """
    from tqdm.auto import tqdm

    from workbench.data import open_dataset, pretrain_indices
    from workbench.data.views import ViewSampler

    tc = cfg.train
    dist.init_from_env(tc.device)
    rank, world = dist.rank(), dist.world_size()
    if tc.batch_size % world:
        raise ValueError(f"train.batch_size {tc.batch_size} is not divisible by the {world} processes")
    if tc.nonfinite not in ("stop", "skip"):
        raise ValueError(f"train.nonfinite is {tc.nonfinite!r}; expected 'stop' or 'skip'")
    device = _device(cfg)
    if device.type == "cpu":
        # A collapsing network produces denormal floats, which make CPU BatchNorm and matmuls
        # ~6x slower (a DINO run without centering: 88 s -> 15 s); flushing them changes nothing
        # measurable in the results.
        torch.set_flush_denormal(True)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    run_dir = runs_dir() / (name or run_name(cfg))
    ckpt_path, metrics_path, warn_path = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl", run_dir / "warnings.jsonl"
    lock = None
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(run_dir)
    try:
        ckpt = None
        if resume:
            if not ckpt_path.exists():
                raise FileNotFoundError(f"cannot resume: no checkpoint in {run_dir}")
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            saved = from_dict(ckpt["config"])
            if config_hash(saved) != config_hash(cfg):
                raise ValueError(f"cannot resume {run_dir}: its config differs from this one "
                                 f"(saved {config_hash(saved)}, given {config_hash(cfg)}); use another name")
            if ckpt.get("world_size", 1) != world:
                raise ValueError(f"cannot resume {run_dir}: saved with {ckpt.get('world_size')} processes, now {world}")
        elif dist.is_main():
            if ckpt_path.exists() or (run_dir / "DONE").exists():
                raise FileExistsError(f"run folder {run_dir} already holds a run; pass resume=True "
                                      f"(--resume), use ensure_run, or choose another name")
            for p in (metrics_path, warn_path):
                p.unlink(missing_ok=True)
        if dist.is_main():
            (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
            warn_path.touch()
        dist.barrier()

        # data: the views of this rank, an augmentation generator on the device
        store = open_dataset(cfg)
        sampler = ViewSampler(store, pretrain_indices(store), n_views=cfg.views.n_views,
                              duration=cfg.audio.segment_seconds, min_gap=cfg.views.min_gap,
                              reject_silence=cfg.views.reject_silence, silence_db=cfg.views.silence_db,
                              seed=tc.seed + 1_000 * rank)
        generator = torch.Generator(device=device).manual_seed(tc.seed + 7_919 * (rank + 1))
        # channels_last also pays on CPU (oneDNN): 1.5x on the paper model (python -m workbench.bench train)
        channels_last = tc.channels_last
        pipeline = ViewPipeline(cfg, device, channels_last)
        local_batch = tc.batch_size // world

        # model, optimiser, precision
        method = build_method(cfg).to(device)
        if channels_last:
            method = method.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(method, tc.optimizer, tc.lr, tc.weight_decay)
        start = 0
        if ckpt is not None:
            method.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            _set_rng_state(ckpt["rng"][rank], sampler, generator)
            start = int(ckpt["step"])
            method.step = start
            if dist.is_main():  # drop rows of steps that are about to be redone
                rows = [r for r in metrics_path.read_text().splitlines() if r.strip()] if metrics_path.exists() else []
                metrics_path.write_text("".join(r + "\n" for r in rows if json.loads(r)["step"] <= start))
        model: nn.Module = method
        if dist.is_distributed():
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(method)
            model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if tc.compile:
            method.encoder.compile()
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if device.type == "cuda" and tc.precision == "bf16" else nullcontext())
        params = [p for p in method.parameters() if p.requires_grad]

        compute_diagnostics, monitor = _diagnostics_hooks(cfg, run_dir.name) if cfg.diagnostics.every else (None, None)
        held_out, held_out_tracks = _held_out_views(cfg, store, pipeline, device) if compute_diagnostics else (None, None)

        def checkpoint(step: int) -> None:
            rng = [_rng_state(sampler, generator)]
            if dist.is_distributed():
                rng = [None] * world
                torch.distributed.all_gather_object(rng, _rng_state(sampler, generator))
            if dist.is_main():
                _atomic_save({"config": to_dict(cfg), "step": step, "world_size": world, "model": method.state_dict(),
                              "optimizer": optimizer.state_dict(), "rng": rng}, ckpt_path)

        bar = tqdm(total=tc.steps, initial=start, desc=f"{cfg.method.name}", disable=not (progress and dist.is_main()),
                   dynamic_ncols=True)
        window: list[dict[str, Tensor]] = []
        t0, clips = time.perf_counter(), 0
        stopped = None
        method.train()
        for step in range(start + 1, tc.steps + 1):
            lr = learning_rate(step, tc.lr, tc.warmup_steps, tc.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr

            views = pipeline(sampler.sample(local_batch).views, generator, device)
            with autocast:
                loss, logs = model(views, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else float("inf"))
            skipped = torch.zeros((), device=device)
            if tc.nonfinite == "skip" and not bool(torch.isfinite(loss.detach() + grad_norm)):  # opt-in host read
                skipped += 1  # no optimiser step, as GradScaler on an inf/NaN gradient
            else:
                optimizer.step()
            method.after_step(step)
            window.append({**logs, "loss": loss.detach(), "grad_norm": grad_norm.detach(), "skipped": skipped})
            clips += local_batch * len(views) * world

            last = step == tc.steps
            if step % tc.log_every == 0 or step % tc.checkpoint_every == 0 or last:
                # the only host read of the interval: stack, all-reduce, one transfer
                keys = list(window[0])
                table = dist.all_reduce_mean(torch.stack([torch.stack([w[k].float() for w in window]) for k in keys]))
                table = table.cpu().numpy()  # (n_keys, n_steps)
                finite = np.isfinite(table[[keys.index("loss"), keys.index("grad_norm")]])  # (2, n_steps)
                finite |= table[keys.index("skipped")] > 0  # skipped steps changed nothing
                if not finite.all():
                    i = int(np.flatnonzero(~finite.all(axis=0))[0])
                    what = "loss" if not finite[0, i] else "gradient"
                    terms = ", ".join(f"{k}={table[j, i]:.4g}" for j, k in enumerate(keys))
                    good = f"{ckpt_path} (step {torch.load(ckpt_path, weights_only=True)['step']})" \
                        if ckpt_path.exists() else "none written yet"
                    raise FloatingPointError(f"non-finite {what} at step {step - len(window) + 1 + i} of run "
                                             f"{run_dir.name}: {terms}; last good checkpoint kept: {good}")
                elapsed = time.perf_counter() - t0
                ok = table[keys.index("skipped")] == 0  # means over the steps that were taken
                row = {"kind": "train", "step": step,
                       **{k: float(table[j][ok].mean()) if ok.any() else float("nan") for j, k in enumerate(keys)},
                       "skipped": int(round(float(table[keys.index("skipped")].sum()))),
                       "lr": lr, **method.schedule_state(), "clips_per_s": clips / max(elapsed, 1e-9),
                       "time": time.time()}
                window, t0, clips = [], time.perf_counter(), 0
                if dist.is_main():
                    _append_jsonl(metrics_path, row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}")
                    if callback is not None:
                        callback(row)

            paused = time.perf_counter()  # diagnostics and checkpoints do not count in clips/s
            if compute_diagnostics is not None and (step % cfg.diagnostics.every == 0 or last):
                with autocast:  # no_grad, modes and BatchNorm buffers are handled (and restored) there
                    figures = {k: float(v) for k, v in compute_diagnostics(method, held_out, held_out_tracks).items()}
                found = monitor.check(step, figures)
                if dist.is_main():
                    _append_jsonl(metrics_path, {"kind": "diagnostics", "step": step, **figures})
                    for w in found:  # CollapseMonitor prints them
                        _append_jsonl(warn_path, {"step": step, **w})
                if found and cfg.diagnostics.stop_on_collapse:
                    stopped = f"stopped at step {step}: collapse ({found[0].get('message', found[0])})"
                    last = True

            if step % tc.checkpoint_every == 0 or last:
                checkpoint(step)
            t0 += time.perf_counter() - paused
            bar.update(1)
            if last:
                break
        bar.close()
        if dist.is_main():
            (run_dir / "DONE").write_text(stopped or "finished\n")
        dist.barrier()
        return run_dir
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if device.type == "cpu":
            torch.set_flush_denormal(False)  # torch's default; the caller's process is left as found
        if lock is not None:
            lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------- notebooks
class LiveLossPlot:
    """Loss-vs-step curves of several runs in one matplotlib figure, redrawn while they train.

    ``live.callback(label)`` is a ``pretrain`` callback; ``live.show(label, run_dir)`` draws a
    finished (or reused) run from its metrics.jsonl. Redraws at most every ``every_s`` seconds.
    """

    def __init__(self, every_s: float = 2.0):
        import matplotlib.pyplot as plt

        self.fig, self.ax = plt.subplots(figsize=(7, 3.5))
        plt.close(self.fig)  # shown through the display handle only
        self.curves: dict[str, tuple[list[int], list[float]]] = {}
        self.every_s, self.last, self.handle = every_s, 0.0, None

    def callback(self, label: str) -> Callable[[dict], None]:
        def add(row: dict) -> None:
            steps, losses = self.curves.setdefault(label, ([], []))
            steps.append(row["step"])
            losses.append(row["loss"])
            if time.time() - self.last > self.every_s:
                self.draw()
        return add

    def show(self, label: str, run_dir: str | os.PathLike) -> None:
        df = read_metrics(run_dir)
        df = df[df["kind"] == "train"]
        self.curves[label] = (list(df["step"]), list(df["loss"]))
        self.draw()

    def draw(self) -> None:
        from IPython.display import display

        self.ax.clear()
        for label, (steps, losses) in self.curves.items():
            self.ax.plot(steps, losses, label=label)
        self.ax.set(xlabel="step", ylabel="training loss", title="pretraining loss (each method its own scale)")
        self.ax.set_yscale("symlog", linthresh=1.0)
        if self.curves:
            self.ax.legend(loc="upper right", fontsize=8)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
        self.last = time.time()
