"""Run folders: names, the writer's lock, atomic writes, metrics rows, checkpoints, resume, loading.

A pretraining run lives in ``data_dir()/runs/<run_name(cfg)>/``:

- ``config.json``: the run config (`workbench.config.to_dict`); also inside every checkpoint;
- ``metrics.jsonl``: one row per log interval (``kind: "train"``: step, loss and its terms, lr,
  EMA momentum, temperatures, grad_norm, clips_per_s) and per diagnostics call
  (``kind: "diagnostics"``); ``warnings.jsonl``: collapse warnings;
- ``checkpoint.pt``: the latest state (model with EMA teacher and DINO center, optimiser, step,
  every random generator), written atomically and synced; ``DONE`` once finished;
- ``lock`` while a process writes the folder (pid and host; a dead holder's lock is stale).

The trainer (`workbench.train`) writes a folder through `RunFolder`; embeddings, evaluation
and notebooks read it with `load_run`, `load_encoder` and `read_metrics`. This module never
trains: `workbench.jobs.ensure_runs` (above the trainer) makes the runs that are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from workbench import dist
from workbench.config import RunConfig, data_dir, from_dict, to_dict
from workbench.files import DamagedCheckpointError, append_jsonl, read_checkpoint, save_text, save_torch
from workbench.locks import pid_alive
from workbench.methods import Method, build_method
from workbench.workers import parallel_jobs

# What determines the weights of a run: the run name hashes these sections, and --resume
# compares them (evaluation and probe settings may change between a cut and its resume).
TRAINING_SECTIONS = ("audio", "corpus", "data", "views", "encoder", "method", "train", "diagnostics")
# ... less the settings that never change a run's weights: notebook 03's budget for the collapse
# runs it derives (`config.collapse_configs` turns them into those runs' train settings)
# and the data path's threads (`workbench.data.prefetch`: the same batches either way).
# CPU threads change the weights only at float rounding: a run resumed with other threads
# keeps its name.
NOT_TRAINING = {"diagnostics": ("collapse_steps", "collapse_lr", "collapse_batch", "collapse_dino_momentum"),
                "train": ("prefetch", "gather_on", "data_workers", "threads")}


class RunLockedError(RuntimeError):
    """Another live process writes this run folder."""


# ----------------------------------------------------------------------------------- names, device
def training_settings(cfg: RunConfig) -> dict[str, dict]:
    """{section: settings} of what determines the weights (`TRAINING_SECTIONS` less `NOT_TRAINING`)."""
    out = {}
    for section in TRAINING_SECTIONS:
        values = to_dict(getattr(cfg, section))
        for key in NOT_TRAINING.get(section, ()):
            values.pop(key)
        out[section] = values
    if cfg.data.dataset == "transfer":  # its generation settings matter only to a run that reads it
        out["transfer"] = to_dict(cfg.transfer)
    return out


def training_hash(cfg: RunConfig, length: int = 10) -> str:
    """Hash of `training_settings`: the run name's hash, and what --resume compares."""
    blob = json.dumps(training_settings(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def run_name(cfg: RunConfig) -> str:
    """``<profile>-<dataset>-<method>-<fidelity>[-<variant>]-<hash>``; the hash covers what
    changes training (not the probe or evaluation settings, so evaluating differently reuses the
    run); ``variant`` names a deliberate departure (``cfg.method.variant``, e.g. notebook 03's
    collapse runs) so such a run never reads like the method's own."""
    dataset = cfg.data.dataset + (f"-{cfg.data.variant}" if cfg.data.variant else "")
    variant = f"-{cfg.method.variant}" if cfg.method.variant else ""
    return f"{cfg.profile}-{dataset}-{cfg.method.name}-{cfg.method.fidelity}{variant}-{training_hash(cfg)}"


def runs_dir() -> Path:
    return data_dir() / "runs"


def device(cfg: RunConfig) -> torch.device:
    """The device of ``cfg.train.device`` (``auto``: CUDA when present); under torchrun on CUDA,
    this process's local GPU."""
    name = cfg.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.is_distributed():
        return torch.device("cuda", dist.local_rank())
    return torch.device(name)


def cpu_jobs(cfg: RunConfig, jobs: int) -> int:
    """How many of ``jobs`` CPU jobs of ``cfg`` (runs, encoders to probe, notebooks) run at once:
    `workers.parallel_jobs` with the config's ``train.threads`` and device."""
    return parallel_jobs(jobs, cfg.train.threads, device(cfg).type)


def _trim_jsonl(path: Path, last_step: int) -> None:
    """Keep the rows of steps <= ``last_step`` (the rows of steps a resume redoes go)."""
    if path.exists():
        rows = [r for r in path.read_text().splitlines() if r.strip()]
        save_text(path, "".join(r + "\n" for r in rows if json.loads(r)["step"] <= last_step))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A run's checkpoint on CPU (`files.read_checkpoint`: tensors only); a damaged file is one
    line that says what to do."""
    path = Path(path)
    try:
        return read_checkpoint(path)
    except DamagedCheckpointError as err:
        raise DamagedCheckpointError(f"{err}; it cannot be resumed or loaded: delete the run folder "
                                     f"{path.parent} and train again") from err


# ----------------------------------------------------------------------------------- the lock
def acquire_lock(run_dir: Path) -> Path:
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
            if host == me["host"] and pid > 0 and not pid_alive(pid):
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


# ----------------------------------------------------------------------------------- the writer
class RunFolder:
    """What the trainer writes into one run folder. ``with RunFolder(dir).open(cfg, resume,
    world) as ckpt:`` takes the lock (main process), checks a resume and returns the checkpoint
    to restore (None for a fresh run), and releases the lock on the way out, whatever happens."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.warnings_path = self.dir / "warnings.jsonl"
        self._lock: Path | None = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def open(self, cfg: RunConfig, resume: bool, world: int) -> dict | None:
        """Lock, check and prepare the folder; the checkpoint to resume from, or None."""
        if dist.is_main():
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = acquire_lock(self.dir)
        ckpt = self._resume_checkpoint(cfg, world) if resume else None
        if dist.is_main():
            if ckpt is None:
                if self.checkpoint_path.exists() or (self.dir / "DONE").exists():
                    raise FileExistsError(f"run folder {self.dir} already holds a run; pass resume=True "
                                          f"(--resume), use ensure_run, or choose another name")
                for p in (self.metrics_path, self.warnings_path):
                    p.unlink(missing_ok=True)
            else:  # the rows of steps about to be redone go
                for p in (self.metrics_path, self.warnings_path):
                    _trim_jsonl(p, int(ckpt["step"]))
            save_text(self.dir / "config.json", json.dumps(to_dict(cfg), indent=2))
            self.warnings_path.touch()
        dist.barrier()
        return ckpt

    def _resume_checkpoint(self, cfg: RunConfig, world: int) -> dict:
        if not self.checkpoint_path.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint in {self.dir}")
        ckpt = load_checkpoint(self.checkpoint_path)
        saved = from_dict(ckpt["config"])
        if training_hash(saved) != training_hash(cfg):
            mine, theirs = training_settings(cfg), training_settings(saved)
            changed = [k for k in dict.fromkeys([*mine, *theirs]) if mine.get(k) != theirs.get(k)]
            raise ValueError(f"cannot resume {self.dir}: the training settings differ from the saved ones "
                             f"(sections {', '.join(changed)}); use another name")
        if ckpt.get("world_size", 1) != world:
            raise ValueError(f"cannot resume {self.dir}: saved with {ckpt.get('world_size')} processes, now {world}")
        return ckpt

    def log(self, row: dict) -> None:
        if dist.is_main():
            append_jsonl(self.metrics_path, row)

    def warn(self, row: dict) -> None:
        if dist.is_main():
            append_jsonl(self.warnings_path, row)

    def save_checkpoint(self, state: dict) -> None:
        if dist.is_main():
            save_torch(state, self.checkpoint_path)

    def last_good(self) -> str:
        """The last checkpoint kept, for error messages."""
        if not self.checkpoint_path.exists():
            return "none written yet"
        return f"{self.checkpoint_path} (step {load_checkpoint(self.checkpoint_path)['step']})"

    def finish(self, message: str | None) -> None:
        if dist.is_main():
            save_text(self.dir / "DONE", message or "finished\n")
        dist.barrier()


# ----------------------------------------------------------------------------------- readers
def load_run(run_dir: str | os.PathLike) -> tuple[RunConfig, Method]:
    """(config, method with the weights of the latest checkpoint), on CPU, in eval mode."""
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in run folder {run_dir}")
    ckpt = load_checkpoint(path)
    cfg = from_dict(ckpt["config"])
    method = build_method(cfg)
    method.load_state_dict(ckpt["model"])
    method.step = int(ckpt["step"])
    return cfg, method.eval()


def load_encoder(run_dir: str | os.PathLike) -> tuple[nn.Module, RunConfig]:
    """(student backbone in eval mode, config) of a run folder."""
    cfg, method = load_run(run_dir)
    return method.encoder.eval(), cfg


def read_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """metrics.jsonl as a pandas DataFrame (rows of every ``kind``; empty if none yet)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
