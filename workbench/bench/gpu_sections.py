"""The sections of the prepared GPU check (`workbench.bench.gpu`): sizes, the clock, and one
function a section (environment, corpus, peak, steps, augment, pretrain), each returning the
figures that `workbench.bench.gpu.run_check` writes into its report."""


from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
import torchaudio

from workbench.audio import MelFrontend
from workbench.bench.augment import OURS, _timed, compare
from workbench.bench.train import GPU_PEAK_BF16, matmul_peak, step_flops
from workbench.config import REPO_ROOT, RunConfig, for_method, load_profile
from workbench.data.corpus import build_corpus
from workbench.runs import read_metrics
from workbench.train import (
    TrainingData,
    ViewPipeline,
    build_learner,
    learning_rate,
    pretrain,
    set_learning_rate,
    torch_flags,
    train_step,
)

OPTIONAL = {"soundfile": "soundfile", "umap": "umap-learn", "torch_audiomentations": "torch-audiomentations",
            "pytest": "pytest", "triton": "triton"}  # module -> distribution: may be absent on the GPU machine
SETTINGS = {"fp32": dict(precision="fp32", channels_last=False, compile=False),
            "bf16+cl": dict(precision="bf16", channels_last=True, compile=False),
            "bf16+cl+compile": dict(precision="bf16", channels_last=True, compile=True)}
PRETRAIN_METHODS = ("simclr", "dino")
COMPILE_FIRST = ("simclr", "dino")  # the others only while time is left


@dataclass(frozen=True)
class Sizes:
    profile: str
    corpus: dict = field(default_factory=dict)  # CorpusConfig changes: only the tracks the check needs
    warmup: int = 3
    timed: int = 10
    pretrain_steps: int = 300
    log_every: int = 10
    augment_batch: int = 256
    augment_repeats: int = 10
    matmul_n: int = 8192
    compile_backend: str = "inductor"  # train.compile's default
    compile_rest: bool = True  # compile BYOL, VICReg, Barlow Twins too when time is left
    budget_s: float = 390.0
    # the time budget's rules: seconds a setting of section 3 needs to start; pretraining gets
    # an equal share of what is left less the reserve for compile, within [min, max] seconds a
    # method; the first compile needs compile_need_s, later ones 1.3 x the slowest before + 10 s
    step_need_s: float = 25.0
    pretrain_reserve_s: float = 130.0
    pretrain_min_s: float = 30.0
    pretrain_max_s: float = 120.0
    compile_need_s: float = 90.0


# paper: its 400 pool tracks, and the 128 + 64 labeled ones the online probe of diagnostics reads
FULL = Sizes("paper", corpus=dict(n_train=128, n_valid=64, n_test=8))
QUICK = Sizes("smoke", corpus=dict(n_pool=16, n_train=8, n_valid=4, n_test=4, min_seconds=13.0, max_seconds=14.0),
              warmup=1, timed=2, pretrain_steps=3, log_every=1, augment_batch=8, augment_repeats=2, matmul_n=512,
              compile_backend="eager", compile_rest=False, budget_s=240.0, step_need_s=0.0, pretrain_reserve_s=0.0,
              pretrain_min_s=0.0, pretrain_max_s=math.inf, compile_need_s=0.0)


class OutOfTime(Exception):
    """Raised from a pretraining callback when the budget is spent (stops the run cleanly)."""


class Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def log(self, message: str) -> None:
        print(f"[gpu-check {time.strftime('%H:%M:%S')} +{self.elapsed():6.1f} s] {message}", flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _short(err: BaseException) -> str:
    """An exception on one line (an OOM's or a compiler's message can run to pages)."""
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"[:300]


def config(sizes: Sizes, device: torch.device, method: str = "simclr", **train: Any) -> RunConfig:
    cfg = for_method(load_profile(sizes.profile), method)
    return replace(cfg, corpus=replace(cfg.corpus, **sizes.corpus),
                   train=replace(cfg.train, device=device.type, **train))


# ----------------------------------------------------------------------------------- sections
def environment(device: torch.device, quick_reason: str) -> dict:

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    optional = {}
    for module, dist_name in OPTIONAL.items():
        if importlib.util.find_spec(module) is None:
            optional[dist_name] = "absent"
        else:
            try:
                optional[dist_name] = importlib.metadata.version(dist_name)
            except importlib.metadata.PackageNotFoundError:
                optional[dist_name] = "present"

    env = {"commit": commit, "python": platform.python_version(), "torch": torch.__version__,
           "torchaudio": torchaudio.__version__, "cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
           "device": str(device), "quick": bool(quick_reason), "quick_reason": quick_reason,
           "c_compiler": shutil.which("cc") or shutil.which("gcc") or "absent",
           "prefetcher": hasattr(TrainingData, "wait_seconds"), "optional": optional}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2 ** 30,
                   capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
    return env


def corpus(sizes: Sizes, device: torch.device) -> dict:

    cfg = config(sizes, device)
    t = time.perf_counter()
    store = build_corpus(cfg.corpus, progress=False, workers=os.cpu_count() or 1)
    seconds = time.perf_counter() - t
    return {"tracks": len(store), "pool_tracks": cfg.corpus.n_pool, "build_s": seconds,
            "tracks_per_s": len(store) / seconds, "hours": float(store.lengths.sum()) / cfg.corpus.sample_rate / 3600,
            "workers": os.cpu_count() or 1}


def peak(sizes: Sizes, device: torch.device) -> dict:

    measured = matmul_peak(device, torch.bfloat16, n=sizes.matmul_n, reps=5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    sheet = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
    return {"device": name, "matmul": f"bf16 ({sizes.matmul_n}, {sizes.matmul_n}) @ ({sizes.matmul_n}, "
            f"{sizes.matmul_n}), best of 5", "bf16_tflops": measured / 1e12,
            "datasheet_bf16_tflops": None if sheet is None else sheet / 1e12,
            "measured_over_datasheet": None if sheet is None else measured / sheet}


def time_step(cfg: RunConfig, device: torch.device, sizes: Sizes, count_flops: bool) -> dict:
    """One setting of one method: the step of `workbench.train.pretrain`, timed (see the module doc)."""
    tc = cfg.train
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch_flags(device, tc.deterministic), contextlib.ExitStack() as stack:
        data = stack.enter_context(TrainingData(cfg, device))  # the prefetcher's threads stop with this block
        learner = build_learner(cfg, device, compile_backend=sizes.compile_backend)
        learner.skip_nonfinite = False  # a non-finite loss is counted here, not skipped
        learner.method.train()
        row: dict[str, Any] = {}
        if count_flops:
            row["flops"] = step_flops(learner.method, data.next_views(), 1)

        def step(s: int) -> tuple[float, float, torch.Tensor]:
            _sync(device)
            t0 = time.perf_counter()
            set_learning_rate(learner.optimizer, learning_rate(s, tc.lr, tc.warmup_steps, tc.steps))
            views = data.next_views()
            _sync(device)
            t1 = time.perf_counter()
            loss, *_ = train_step(learner, views, s)
            _sync(device)
            return t1 - t0, time.perf_counter() - t0, loss.detach()

        t = time.perf_counter()
        for s in range(1, sizes.warmup + 1):
            step(s)
        row["warmup_s"] = time.perf_counter() - t  # the compile time, for a compiled encoder
        wait0 = data.wait_seconds
        timed = [step(s) for s in range(sizes.warmup + 1, sizes.warmup + sizes.timed + 1)]
        wait1 = data.wait_seconds
        n = len(timed)
        step_s = sum(t[1] for t in timed) / n
        data_s = sum(t[0] for t in timed) / n
        losses = torch.stack([t[2].float() for t in timed]).cpu()
        row.update(step_s=step_s, data_s=data_s, compute_s=step_s - data_s, data_share=data_s / step_s,
                   wait_s=(wait1 - wait0) / n,
                   clips_per_s=data.clips_per_step / step_s, clips_per_step=data.clips_per_step,
                   nonfinite_losses=int((~torch.isfinite(losses)).sum()),
                   peak_memory_gib=torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None)
        row["wait_share"] = row["wait_s"] / step_s
        return row


def steps(sizes: Sizes, device: torch.device, clock: Clock, peak_flops: float | None, settings: list[str],
          methods: list[str], flops: dict[str, int], rows: list[dict], need_s: float,
          saved: Callable[[], None]) -> list[dict]:
    """Time each (method, setting), appending to ``rows`` and calling ``saved()`` after each; a
    failure, or a budget that has less than ``need_s`` seconds left, is recorded in its row and
    the next one runs."""
    for method in methods:
        for setting in settings:
            row: dict[str, Any] = {"method": method, "setting": setting}
            if clock.left() < need_s:
                row["skipped"] = f"time budget: {clock.left():.0f} s left, about {need_s:.0f} s needed"
            else:
                cfg = config(sizes, device, method, **SETTINGS[setting])
                t = time.perf_counter()
                try:
                    row.update(time_step(cfg, device, sizes, count_flops=method not in flops))
                    flops.setdefault(method, row.pop("flops", None))
                    row["flops_per_step"] = flops[method]
                    if peak_flops and flops[method]:
                        row["mfu"] = flops[method] / row["step_s"] / peak_flops
                except Exception as err:  # an OOM or a compile failure must not lose the other rows
                    row["error"] = _short(err)
                row["wall_s"] = time.perf_counter() - t
                if setting.endswith("compile"):
                    row["compile_backend"] = sizes.compile_backend
                    torch._dynamo.reset()  # drop the compiled graphs with the model
                _free(device)
            rows.append(row)
            saved()
            what = row.get("error") or row.get("skipped") or (
                f"{row['clips_per_s']:.0f} clips/s, step {1e3 * row['step_s']:.1f} ms (data {1e3 * row['data_s']:.1f})"
                + (f", MFU {100 * row['mfu']:.1f} %" if "mfu" in row else ""))
            clock.log(f"  {method:13s} {setting:16s} {what}")
    return rows


def augment(sizes: Sizes, device: torch.device) -> dict:

    b, seconds, sr = sizes.augment_batch, 4.0, 16_000
    rows = compare(device.type, b, seconds, sr, repeats=sizes.augment_repeats, warmup=2,
                   peers=(OURS, "torch-audiomentations"))
    peer = rows["torch-audiomentations"]
    if "error" in peer:
        peer["absent"] = importlib.util.find_spec("torch_audiomentations") is None
    else:
        peer["version"] = importlib.metadata.version("torch-audiomentations")
        rows[OURS]["speedup_over_peer"] = rows[OURS]["clips_per_s"] / peer["clips_per_s"]
    torch.manual_seed(0)
    x = (0.3 * torch.randn(b, int(seconds * sr))).to(device)
    cfg = load_profile(sizes.profile)
    frontend = MelFrontend.from_config(cfg.audio).to(device)
    pipeline = ViewPipeline(replace(cfg, views=replace(cfg.views, augment="clmr")), device, channels_last=True)
    generator = torch.Generator(device=device).manual_seed(0)
    timed = {"mel front end (workbench.audio.MelFrontend)": lambda x, g: frontend(x),
             "ViewPipeline: clmr chain, mel, 2 views": lambda x, g: pipeline(list(x.chunk(2)), g, device)}
    with torch.no_grad():
        for name, fn in timed.items():
            for _ in range(2):
                _timed(fn, x, generator)
            t = [_timed(fn, x, generator) for _ in range(sizes.augment_repeats)]
            rows[name] = {"clips_per_s": b / statistics.median(t), "best_clips_per_s": b / min(t),
                          "where": device.type}
    return {"batch": b, "seconds": seconds, "device": device.type, "rows": rows}


def pretrain_short(sizes: Sizes, device: torch.device, clock: Clock, method: str, step_s: float | None,
                   time_s: float) -> dict:
    """`workbench.train.pretrain` for at most ``time_s`` seconds (steps sized from ``step_s``)."""
    steps_n = sizes.pretrain_steps
    if step_s:  # 20 s for set-up (store, monitor), diagnostics and the checkpoint; steps 1.3x the timed one
        steps_n = max(min(steps_n, int((time_s - 20) / (1.3 * step_s))), min(steps_n, 20))
    cfg = config(sizes, device, method, steps=steps_n, warmup_steps=max(1, steps_n // 10),
                 steps_per_epoch=max(1, steps_n // 5), log_every=min(sizes.log_every, steps_n),
                 checkpoint_every=steps_n, nonfinite="skip")
    rows: list[dict] = []
    deadline = time.perf_counter() + time_s

    def callback(row: dict) -> None:
        rows.append(row)
        if time.perf_counter() > deadline or clock.left() < 5:
            raise OutOfTime(f"stopped at step {row['step']} of {steps_n}: time budget")

    t = time.perf_counter()
    stopped = None
    try:
        folder = pretrain(cfg, name=f"gpu-check-{method}", progress=False, callback=callback)
    except OutOfTime as err:
        stopped, folder = str(err), None
    wall = time.perf_counter() - t
    if not rows:
        raise RuntimeError(f"{method}: no metrics row in {wall:.0f} s")
    losses = [r["loss"] for r in rows]
    rates = [r["clips_per_s"] for r in rows[1:]] or [rows[0]["clips_per_s"]]  # the first interval warms up
    out = {"method": method, "steps": rows[-1]["step"], "planned_steps": steps_n, "stopped": stopped,
           "precision": cfg.train.precision, "channels_last": cfg.train.channels_last,
           "batch": cfg.train.batch_size, "views": cfg.views.n_views, "log_every": cfg.train.log_every,
           "loss_first": losses[0], "loss_last": losses[-1], "loss_min": min(losses),
           "loss_fell": bool(losses[-1] < losses[0]),
           "schedule": {"warmup_steps": cfg.train.warmup_steps, "steps_per_epoch": cfg.train.steps_per_epoch,
                        "warmup_teacher_temp_fraction": cfg.method.warmup_teacher_temp_fraction},
           "skipped_steps": int(sum(r.get("skipped", 0) for r in rows)),
           "nonfinite_rows": int(sum(not math.isfinite(v) for v in losses)),
           "clips_per_s": statistics.median(rates), "wall_s": wall}
    if folder is not None:
        metrics = read_metrics(folder)
        if "kind" in metrics and (metrics["kind"] == "diagnostics").any():
            last = metrics[metrics["kind"] == "diagnostics"].iloc[-1].dropna().to_dict()
            out["diagnostics"] = {k: v for k, v in last.items() if isinstance(v, (int, float))}
    return out


# ----------------------------------------------------------------------------------- the check
