"""Runs made on demand: the finished run folder of a config, trained when it is missing.

`ensure_run` reuses a finished run folder (``DONE``), resumes one with a checkpoint, and trains
the rest (`workbench.train.pretrain`). `ensure_runs` does it for a list, training the missing
runs side by side on CPU cores (`workbench.runs.cpu_jobs`), each in a spawned process
killed with this one. This module sits above the trainer: whoever imports it may train.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from workbench.config import RunConfig
from workbench.runs import cpu_jobs, run_name, runs_dir
from workbench.train import pretrain
from workbench.workers import worker_results


def ensure_run(cfg: RunConfig, progress: bool = True, callback: Callable[[dict], None] | None = None) -> Path:
    """The finished run folder of ``cfg``: reused when it has ``DONE``, resumed when it has a
    checkpoint, trained otherwise."""
    run_dir = runs_dir() / run_name(cfg)
    if (run_dir / "DONE").exists():
        return run_dir
    return pretrain(cfg, resume=(run_dir / "checkpoint.pt").exists(), progress=progress, callback=callback)


def ensure_runs(cfgs: list[RunConfig], progress: bool = True, then: Sequence[Callable[[], str]] = ()) -> list[Path]:
    """The finished run folders of ``cfgs``, in order, as `ensure_run` each; the missing ones
    trained side by side (`cpu_jobs`), each in its own process (spawned, killed with this one; a
    killed run resumes from its checkpoint next time). A run's weights do not depend on how many
    train beside it. Prints one line as each run finishes (a live bar only for runs trained here).

    ``then``: picklable zero-argument jobs that cache something a later stage needs (the demo's
    supervised baseline, the transfer set), queued after the missing runs in the same processes,
    where they take the core that the last run would leave idle; each returns a name for the
    log. Only side by side: otherwise the later stage makes them itself when it needs them."""
    todo = list({run_name(c): c for c in cfgs if not (runs_dir() / run_name(c) / "DONE").exists()}.values())
    workers = min(cpu_jobs(c, len(todo) + len(then)) for c in todo) if todo else 1
    if workers > 1:
        print(f"[workbench] training {len(todo)} runs, {workers} at a time ({todo[0].train.threads} thread each)"
              + (f", then {len(then)} more jobs" if then else ""), flush=True)
        with worker_results(_timed_job, todo + list(then), workers, min_items=2, start="spawn") as results:
            for name, seconds in results:
                print(f"[workbench] finished {name} in {seconds:.0f} s", flush=True)
    return [ensure_run(c, progress=progress) for c in cfgs]


def _timed_job(job: RunConfig | Callable[[], str]) -> tuple[str, float]:
    t = time.perf_counter()
    if not isinstance(job, RunConfig):
        return job(), time.perf_counter() - t
    torch.set_num_threads(job.train.threads)  # also the threads of the run's set-up
    ensure_run(job, progress=False)
    return run_name(job), time.perf_counter() - t
