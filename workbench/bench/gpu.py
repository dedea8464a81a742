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
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import torch

from workbench.bench.gpu_report import markdown, write_report
from workbench.bench.gpu_sections import (
    COMPILE_FIRST,
    FULL,
    PRETRAIN_METHODS,
    QUICK,
    SETTINGS,
    Clock,
    Sizes,
    _free,
    _short,
    augment,
    config,
    corpus,
    environment,
    peak,
    pretrain_short,
    steps,
)
from workbench.methods import METHODS


def run_check(out: Path, quick: bool = False, sizes: Sizes | None = None, keep_data: bool = False) -> dict:
    """Every section in turn (see the module doc); returns the report also written to ``out``."""
    quick_reason = "--quick" if quick else "" if torch.cuda.is_available() else "no CUDA device"
    check = GpuCheck(Path(out), sizes or (QUICK if quick_reason else FULL), quick_reason)
    work = Path(tempfile.mkdtemp(prefix="workbench-gpu-check-"))
    threads = torch.get_num_threads()
    if quick_reason:  # one thread: tiny steps on a shared CPU otherwise stall at every parallel region
        torch.set_num_threads(1)
    try:
        with mock.patch.dict(os.environ, {"WORKBENCH_DATA": str(work)}):  # corpus and run folders
            check.section("corpus", check.corpus)  # first, before CUDA starts: the pool forks
            check.section("environment", check.environment)
            check.section("peak", check.peak)
            check.section("steps", check.steps)
            check.section("augment", check.augment)
            check.section("pretrain", check.pretraining)
            check.section("compile", check.compiled)  # last: the figures above matter more
    finally:
        torch.set_num_threads(threads)
        if not keep_data:
            shutil.rmtree(work, ignore_errors=True)
    check.save()
    check.clock.log(f"done in {check.clock.elapsed():.0f} s: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return check.report


class GpuCheck:
    """The report of one check and its sections, each a method returning its part of the report;
    `section` runs one, records its status and time, and rewrites the report files."""

    def __init__(self, out: Path, sizes: Sizes, quick_reason: str):
        self.out, self.sizes, self.quick_reason = out, sizes, quick_reason
        self.device = torch.device("cpu" if quick_reason else "cuda")
        self.clock = Clock(sizes.budget_s)
        out.mkdir(parents=True, exist_ok=True)
        self.report: dict[str, Any] = {"profile": sizes.profile, "budget_s": sizes.budget_s, "sections": {},
                                       "notes": []}
        self.peak_flops: float | None = None
        self.flops: dict[str, int] = {}
        train = config(sizes, self.device).train  # the data path's settings, whichever the trainer has
        self.timing = {"warmup_steps": sizes.warmup, "timed_steps": sizes.timed, "data_path": {
            k: getattr(train, k) for k in ("prefetch", "data_workers", "gather_on") if hasattr(train, k)}}

    def save(self) -> None:
        self.report["elapsed_s"] = self.clock.elapsed()
        write_report(self.report, self.out)

    def section(self, name: str, fn: Callable[[], Any]) -> Any:
        self.clock.log(f"{name}: start")
        t = time.perf_counter()
        try:
            self.report[name], status = fn(), "ok"
        except Exception as err:
            status = f"error: {_short(err)}"
            traceback.print_exc()
        self.report["sections"][name] = {"status": status, "seconds": time.perf_counter() - t}
        self.save()
        self.clock.log(f"{name}: {status} ({time.perf_counter() - t:.1f} s)")
        return self.report.get(name)

    def corpus(self) -> dict:
        return corpus(self.sizes, self.device)

    def environment(self) -> dict:
        return environment(self.device, self.quick_reason)

    def peak(self) -> dict:
        pk = peak(self.sizes, self.device)
        self.peak_flops = pk["bf16_tflops"] * 1e12
        return pk

    def steps(self) -> dict:
        rows: list[dict] = []
        self.report["steps"] = {"settings": {k: SETTINGS[k] for k in ("fp32", "bf16+cl")}, **self.timing,
                                "rows": rows}
        steps(self.sizes, self.device, self.clock, self.peak_flops, ["fp32", "bf16+cl"], list(METHODS), self.flops,
              rows, need_s=self.sizes.step_need_s, saved=self.save)
        return self.report["steps"]

    def augment(self) -> dict:
        return augment(self.sizes, self.device)

    def pretraining(self) -> dict:
        sizes, clock = self.sizes, self.clock
        step_s = {r["method"]: r["step_s"] for r in self.report.get("steps", {}).get("rows", [])
                  if r["setting"] == "bf16+cl" and "step_s" in r}
        pre = self.report["pretrain"] = {}
        for i, m in enumerate(PRETRAIN_METHODS):
            left = clock.left()
            share = min(sizes.pretrain_max_s, max(sizes.pretrain_min_s, (left - sizes.pretrain_reserve_s)
                                                  / (len(PRETRAIN_METHODS) - i)))
            if left < share or left < 10:
                pre[m] = {"skipped": f"time budget: {left:.0f} s left"}
                continue
            try:
                pre[m] = pretrain_short(sizes, self.device, clock, m, step_s.get(m), share)
            except Exception as err:
                pre[m] = {"error": _short(err)}
            self.save()
            clock.log(f"  {m}: {pre[m]}")
            _free(self.device)
        return pre

    def compiled(self) -> dict:
        sizes, rows = self.sizes, []
        self.report["compile"] = {"settings": {"bf16+cl+compile": SETTINGS["bf16+cl+compile"]}, **self.timing,
                                  "backend": sizes.compile_backend, "rows": rows}
        rest = [m for m in METHODS if m not in COMPILE_FIRST]
        for m in [m for m in COMPILE_FIRST if m in METHODS] + (rest if sizes.compile_rest else []):
            walls = [r["wall_s"] for r in rows if "step_s" in r]  # the next one costs about as much
            need = sizes.compile_need_s if not walls or not sizes.compile_need_s else 1.3 * max(walls) + 10
            steps(sizes, self.device, self.clock, self.peak_flops, ["bf16+cl+compile"], [m], self.flops, rows, need,
                  self.save)
        skipped = [r["method"] for r in rows if "skipped" in r]
        if not sizes.compile_rest:
            self.report["notes"].append(f"torch.compile timed for {', '.join(COMPILE_FIRST)} only "
                                        f"({'quick run' if self.quick_reason else 'compile_rest off'})")
        if skipped:
            self.report["notes"].append(f"torch.compile not timed for {', '.join(skipped)}: time budget")
        return self.report["compile"]


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
