"""``python -m workbench.bench parallel [--profile demo] [--method simclr] [--steps 12]``

Runs side by side on CPU (`workbench.workers.parallel_jobs`, ``train.threads``) against one run
using every core: the profile's real training step (mel front end, forward, backward, AdamW) on
a fixed batch of the profile's size, timed in separate processes so that each has its own torch
thread pool:

- one run, every core: one process, ``torch.set_num_threads(cores)``;
- side by side: ``cores // threads`` processes at once, ``threads`` threads each.

Printed: step time per process, steps/s of the machine (all processes together) and the ratio.
Small convolutions at demo sizes leave a second thread idle most of a step, so on 2 cores two
1-thread runs do more steps per second than one 2-thread run. Sizes other than the demo's may
differ: run it on the target machine before choosing ``train.threads``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SCRIPT = r"""
import sys, time, torch
from workbench.config import apply_overrides, for_method, load_profile
from workbench.train import ViewPipeline, build_learner, train_step
profile, method, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
cfg = apply_overrides(for_method(load_profile(profile), method), ["train.channels_last=true", "train.device=cpu"])
dev = torch.device("cpu")
g = torch.Generator().manual_seed(0)
waves = [torch.randn(cfg.train.batch_size, cfg.audio.segment_samples, generator=g).mul_(0.1)
         for _ in range(cfg.views.n_views)]
learner = build_learner(cfg, dev)
pipe = ViewPipeline(cfg, dev, True)
def step(s):
    train_step(learner, pipe(waves, None, dev), s)
for s in range(2):
    step(s + 1)
t = time.perf_counter()
for s in range(steps):
    step(s + 3)
print((time.perf_counter() - t) / steps)
"""


def _time(profile: str, method: str, steps: int, threads: int, processes: int) -> list[float]:
    """Seconds per step of each of ``processes`` processes started together."""
    cmd = [sys.executable, "-c", SCRIPT, profile, method, str(steps), str(threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"benchmark process failed with exit code {p.returncode}")
        out.append(float(stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m workbench.bench parallel")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="threads per run side by side")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, cores // args.threads)
    t = time.perf_counter()
    one = _time(args.profile, args.method, args.steps, cores, 1)
    side = _time(args.profile, args.method, args.steps, args.threads, n)
    rate_one, rate_side = 1 / one[0], sum(1 / s for s in side)
    print(f"\nruns side by side on CPU: {args.method}, profile {args.profile}, {cores} cores, {args.steps} timed steps "
          f"after 2 warm-up steps ({time.perf_counter() - t:.0f} s)")
    print(f"{'layout':<34}{'s/step per process':>20}{'steps/s, machine':>18}")
    print(f"{f'1 run x {cores} threads':<34}{one[0]:>20.3f}{rate_one:>18.2f}")
    print(f"{f'{n} runs x {args.threads} thread(s) side by side':<34}"
          f"{' / '.join(f'{s:.3f}' for s in side):>20}{rate_side:>18.2f}")
    print(f"ratio (side by side / one run): {rate_side / rate_one:.2f}x")


if __name__ == "__main__":
    main()
