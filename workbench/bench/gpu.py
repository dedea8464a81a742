"""``python -m workbench.bench gpu --out DIR [--quick] [--budget S]``: the prepared GPU check (issue 14).

One command for a session that is lent a GPU: ``bash workbench/bench/gpu_check.sh`` with ``$OUT``
set runs it, then the two CUDA-only tests. It installs nothing (soundfile, umap-learn,
torch-audiomentations and pytest may be absent: imported lazily, reported ``absent``), stops
cleanly within ``--budget`` seconds (default 390, so that the wrapper stays under 8 minutes) and
writes ``gpu_check.json`` (every figure, rewritten after each section) and ``gpu_check.md`` (the
tables for the README's benchmark section) into ``--out``. Sections, the figures that matter
first; each runs on its own, so a failure is recorded and the next one still runs:

1. corpus: the embedded corpus (`workbench.data.corpus.build_corpus`, one worker a core) in a
   temporary data folder ($WORKBENCH_DATA), which also takes the run folders; removed at the end.
2. peak: FLOP/s of a bf16 (8192, 8192) matmul measured in this run (`bench.train.matmul_peak`,
   CUDA events), the denominator of every MFU; beside it the card's data-sheet dense bf16 figure
   when the card is known (`bench.train.GPU_PEAK_BF16`; H100/H200 989 TFLOP/s).
3. steps: the ``paper`` profile's training step (its batch, model, views) for every method of
   `METHODS`, in fp32 and in bf16 autocast + channels_last, put together from the pieces
   `workbench.train.pretrain` calls (TrainingData, build_method, build_optimizer, Precision,
   clip_gradients, before_optimizer_step / after_step). After warm-up steps, each timed step is
   synchronised before its data, after it and after the optimiser step: clips/s (a clip is one
   4 s view through the backbone: batch x views a step); the step split into data
   (``next_views()``: the sampled batch, its copy to the device, augmentation, mel front end) and
   compute; the time the step waited for its sampled batch (``TrainingData.wait_seconds`` when
   the trainer has the background prefetcher; without it, sampling is part of the data time);
   peak memory (``torch.cuda.max_memory_allocated``); model FLOPs a step (`bench.train.step_flops`,
   FlopCounterMode, forward + backward); MFU = FLOPs / step time / the measured peak.
4. augment: our augmentation chain against torch-audiomentations on the same batch on the GPU
   (`bench.augment.compare`: gain, polarity, noise, high-pass, low-pass, p = 1), our mel front end,
   and `workbench.train.ViewPipeline` (clmr chain, mel, spectrogram augmentation).
5. pretrain: `workbench.train.pretrain` of SimCLR and DINO, paper profile (bf16, channels_last),
   a few hundred steps (as many of ``--pretrain-steps`` as the time left allows), schedules
   shortened to the run (warm-up a tenth, 5 "epochs" for DINO's teacher temperature and frozen
   last layer), ``nonfinite=skip`` so that a non-finite step is counted instead of stopping:
   loss of the first and last log interval, whether it fell, skipped steps, clips/s. (DINO's
   loss is a cross-entropy to a teacher whose temperature rises: it need not fall in so short a run.)
6. compile: bf16 + channels_last + ``torch.compile`` of the encoder (as ``train.compile``), timed
   as in 3; about a minute a method, so SimCLR and DINO first and the others only while time is
   left (the JSON says which were skipped and why).

``--quick``, and any run without CUDA, runs every section on the CPU at the smoke profile's sizes
with a 32-track corpus, 2 timed steps and ``torch.compile(backend="eager")`` (tracing without code
generation): a check of this script, not figures to quote.
"""

from __future__ import annotations

import argparse
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
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import torch

from workbench.bench.gpu_report import markdown, write_report
from workbench.config import REPO_ROOT, RunConfig, for_method, load_profile

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
    import torchaudio

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
    from workbench.train import TrainingData

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
    from workbench.data.corpus import build_corpus

    cfg = config(sizes, device)
    t = time.perf_counter()
    store = build_corpus(cfg.corpus, progress=False, workers=os.cpu_count() or 1)
    seconds = time.perf_counter() - t
    return {"tracks": len(store), "pool_tracks": cfg.corpus.n_pool, "build_s": seconds,
            "tracks_per_s": len(store) / seconds, "hours": float(store.lengths.sum()) / cfg.corpus.sample_rate / 3600,
            "workers": os.cpu_count() or 1}


def peak(sizes: Sizes, device: torch.device) -> dict:
    from workbench.bench.train import GPU_PEAK_BF16, matmul_peak

    measured = matmul_peak(device, torch.bfloat16, n=sizes.matmul_n, reps=5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    sheet = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
    return {"device": name, "matmul": f"bf16 ({sizes.matmul_n}, {sizes.matmul_n}) @ ({sizes.matmul_n}, "
            f"{sizes.matmul_n}), best of 5", "bf16_tflops": measured / 1e12,
            "datasheet_bf16_tflops": None if sheet is None else sheet / 1e12,
            "measured_over_datasheet": None if sheet is None else measured / sheet}


def time_step(cfg: RunConfig, device: torch.device, sizes: Sizes, count_flops: bool) -> dict:
    """One setting of one method: the step of `workbench.train.pretrain`, timed (see the module doc)."""
    from workbench import dist
    from workbench.bench.train import step_flops
    from workbench.methods import build_method
    from workbench.train import (Precision, TrainingData, build_optimizer, clip_gradients, learning_rate,
                                 set_learning_rate, torch_flags)

    tc = cfg.train
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch_flags(device, tc.deterministic), contextlib.ExitStack() as stack:
        data = stack.enter_context(TrainingData(cfg, device))  # the prefetcher's threads stop with this block
        method = build_method(cfg).to(device)
        if tc.channels_last:
            method = method.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(method, tc.optimizer, tc.lr, tc.weight_decay)
        precision = Precision(tc.precision, device)
        model = dist.wrap_model(method, device)
        if tc.compile:
            method.encoder.compile(backend=sizes.compile_backend)
        method.train()
        row: dict[str, Any] = {}
        if count_flops:
            row["flops"] = step_flops(method, data.next_views(), 1)

        def step(s: int) -> tuple[float, float, torch.Tensor]:
            _sync(device)
            t0 = time.perf_counter()
            set_learning_rate(optimizer, learning_rate(s, tc.lr, tc.warmup_steps, tc.steps))
            views = data.next_views()
            _sync(device)
            t1 = time.perf_counter()
            with precision.autocast():
                loss, _ = model(views, s)
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss, optimizer)
            method.before_optimizer_step(s)
            grad_norm = clip_gradients(method, tc.grad_clip, tc.clip)
            if not precision.step(optimizer, loss, grad_norm, skip_nonfinite=False):
                method.after_step(s)
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
    from workbench.audio import MelFrontend
    from workbench.bench.augment import OURS, _timed, compare
    from workbench.train import ViewPipeline

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
    from workbench.runs import read_metrics
    from workbench.train import pretrain

    steps_n = sizes.pretrain_steps
    if step_s:  # 20 s for set-up (store, monitor), diagnostics and the checkpoint; steps 1.3x the timed one
        steps_n = max(min(steps_n, int((time_s - 20) / (1.3 * step_s))), min(steps_n, 20))
    cfg = config(sizes, device, method, steps=steps_n, warmup_steps=max(1, steps_n // 10),
                 steps_per_epoch=max(1, steps_n // 5), log_every=min(sizes.log_every, steps_n),
                 checkpoint_every=steps_n, nonfinite="skip")
    cfg = replace(cfg, method=replace(cfg.method, warmup_teacher_temp_epochs=min(2, cfg.method.warmup_teacher_temp_epochs)))
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
                        "warmup_teacher_temp_epochs": cfg.method.warmup_teacher_temp_epochs},
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
def run_check(out: Path, quick: bool = False, sizes: Sizes | None = None, keep_data: bool = False) -> dict:
    """Every section in turn (see the module doc); returns the report also written to ``out``."""
    quick_reason = "--quick" if quick else "" if torch.cuda.is_available() else "no CUDA device"
    sizes = sizes or (QUICK if quick_reason else FULL)
    device = torch.device("cpu" if quick_reason else "cuda")
    clock = Clock(sizes.budget_s)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"profile": sizes.profile, "budget_s": sizes.budget_s, "sections": {}, "notes": []}
    work = Path(tempfile.mkdtemp(prefix="workbench-gpu-check-"))
    threads = torch.get_num_threads()
    if quick_reason:  # one thread: tiny steps on a shared CPU otherwise stall at every parallel region
        torch.set_num_threads(1)

    def section(name: str, fn: Callable[[], Any]) -> Any:
        clock.log(f"{name}: start")
        t = time.perf_counter()
        try:
            report[name], status = fn(), "ok"
        except Exception as err:
            status = f"error: {_short(err)}"
            traceback.print_exc()
        report["sections"][name] = {"status": status, "seconds": time.perf_counter() - t}
        report["elapsed_s"] = clock.elapsed()
        write_report(report, out)
        clock.log(f"{name}: {status} ({time.perf_counter() - t:.1f} s)")
        return report.get(name)

    from workbench.methods import METHODS

    def saved() -> None:
        report["elapsed_s"] = clock.elapsed()
        write_report(report, out)

    try:
        with mock.patch.dict(os.environ, {"WORKBENCH_DATA": str(work)}):  # corpus and run folders
            section("corpus", lambda: corpus(sizes, device))  # first, before CUDA starts: the pool forks
            section("environment", lambda: environment(device, quick_reason))
            pk = section("peak", lambda: peak(sizes, device))
            peak_flops = pk["bf16_tflops"] * 1e12 if pk else None
            flops: dict[str, int] = {}
            train = config(sizes, device).train  # the data path's settings, whichever the trainer has
            timing = {"warmup_steps": sizes.warmup, "timed_steps": sizes.timed, "data_path": {
                k: getattr(train, k) for k in ("prefetch", "data_workers", "gather_on") if hasattr(train, k)}}
            report["steps"] = {"settings": {k: SETTINGS[k] for k in ("fp32", "bf16+cl")}, **timing, "rows": []}
            section("steps", lambda: {**report["steps"], "rows": steps(
                sizes, device, clock, peak_flops, ["fp32", "bf16+cl"], list(METHODS), flops, report["steps"]["rows"],
                need_s=sizes.step_need_s, saved=saved)})
            section("augment", lambda: augment(sizes, device))
            step_s = {r["method"]: r["step_s"] for r in report["steps"]["rows"]
                      if r["setting"] == "bf16+cl" and "step_s" in r}
            report["pretrain"] = {}

            def pretraining() -> dict:
                pre = report["pretrain"]
                for i, m in enumerate(PRETRAIN_METHODS):
                    left = clock.left()
                    share = min(sizes.pretrain_max_s, max(sizes.pretrain_min_s, (left - sizes.pretrain_reserve_s)
                                                          / (len(PRETRAIN_METHODS) - i)))
                    if left < share or left < 10:
                        pre[m] = {"skipped": f"time budget: {left:.0f} s left"}
                        continue
                    try:
                        pre[m] = pretrain_short(sizes, device, clock, m, step_s.get(m), share)
                    except Exception as err:
                        pre[m] = {"error": _short(err)}
                    saved()
                    clock.log(f"  {m}: {pre[m]}")
                    _free(device)
                return pre

            section("pretrain", pretraining)
            rest = [m for m in METHODS if m not in COMPILE_FIRST]
            report["compile"] = {"settings": {"bf16+cl+compile": SETTINGS["bf16+cl+compile"]}, **timing,
                                 "backend": sizes.compile_backend, "rows": []}

            def compiled() -> dict:
                rows = report["compile"]["rows"]
                for m in [m for m in COMPILE_FIRST if m in METHODS] + (rest if sizes.compile_rest else []):
                    walls = [r["wall_s"] for r in rows if "step_s" in r]  # the next one costs about as much
                    need = sizes.compile_need_s if not walls or not sizes.compile_need_s else 1.3 * max(walls) + 10
                    steps(sizes, device, clock, peak_flops, ["bf16+cl+compile"], [m], flops, rows, need, saved)
                skipped = [r["method"] for r in rows if "skipped" in r]
                if not sizes.compile_rest:
                    report["notes"].append(f"torch.compile timed for {', '.join(COMPILE_FIRST)} only "
                                           f"({'quick run' if quick_reason else 'compile_rest off'})")
                if skipped:
                    report["notes"].append(f"torch.compile not timed for {', '.join(skipped)}: time budget")
                return report["compile"]

            section("compile", compiled)  # last: the figures above matter more
    finally:
        torch.set_num_threads(threads)
        if not keep_data:
            shutil.rmtree(work, ignore_errors=True)
    report["elapsed_s"] = clock.elapsed()
    write_report(report, out)
    clock.log(f"done in {clock.elapsed():.0f} s: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m workbench.bench gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (also without CUDA)")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole check (default 390; quick 240)")
    p.add_argument("--pretrain-steps", type=int, default=None, help="steps of the short pretraining (default 300)")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary corpus and run folders")
    args = p.parse_args(argv)
    quick = args.quick or not torch.cuda.is_available()
    sizes = QUICK if quick else FULL
    if args.budget is not None:
        sizes = replace(sizes, budget_s=args.budget)
    if args.pretrain_steps is not None:
        sizes = replace(sizes, pretrain_steps=args.pretrain_steps)
    report = run_check(Path(args.out), quick=args.quick, sizes=sizes, keep_data=args.keep_data)
    bad = {k: v["status"] for k, v in report["sections"].items() if v["status"] != "ok"}
    print(markdown(report))
    if bad:
        print(f"sections not ok: {bad}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
