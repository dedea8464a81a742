"""The trainer: run folder, kill-and-resume equality, non-finite stop, lock, optimiser groups."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

import pytest
import torch

from workbench import runs, train
from workbench.config import apply_overrides
from workbench.methods import SimCLR, build_method


def _cfg(smoke_cfg, *overrides):
    return apply_overrides(smoke_cfg, ["train.deterministic=true", *overrides])


def _tensors_equal(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), f"{what}: {k} differs"
        elif isinstance(a[k], dict):
            _tensors_equal(a[k], b[k], f"{what}.{k}")


def test_pretrain_writes_a_run_folder(smoke_cfg, smoke_store):
    cfg = _cfg(smoke_cfg, "method.name=byol", "train.steps=3")
    run = train.pretrain(cfg, progress=False)
    assert run.name == runs.run_name(cfg) and run.parent == runs.runs_dir()
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "warnings.jsonl", "DONE"):
        assert (run / f).exists(), f
    assert not (run / "lock").exists()
    df = runs.read_metrics(run)
    rows = df[df["kind"] == "train"]
    assert list(rows["step"]) == [1, 2, 3]
    for col in ("loss", "lr", "momentum", "grad_norm", "clips_per_s"):
        assert rows[col].notna().all(), col
    assert (df["kind"] == "diagnostics").any()
    loaded_cfg, method = runs.load_run(run)
    assert loaded_cfg == cfg and method.step == 3
    encoder, _ = runs.load_encoder(run)
    assert not encoder.training
    # ensure_run reuses a finished run without training again
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    assert runs.ensure_run(cfg, progress=False) == run
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        train.pretrain(cfg, progress=False)


class _Kill(Exception):
    pass


def test_killed_and_resumed_equals_uninterrupted(smoke_cfg, smoke_store):
    """DINO (EMA teacher, center, temperature schedule): 4 steps straight vs 3 steps, a kill
    (the checkpoint of step 2 is the last one), resume to 4: identical weights and optimiser."""
    cfg = _cfg(smoke_cfg, "method.name=dino", "train.steps=4", "train.checkpoint_every=2", "diagnostics.every=0")
    full = train.pretrain(cfg, name="resume-full", progress=False)

    def kill_at_3(row):
        if row["step"] == 3:
            raise _Kill
    with pytest.raises(_Kill):
        train.pretrain(cfg, name="resume-cut", progress=False, callback=kill_at_3)
    cut = full.parent / "resume-cut"
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (cut / "DONE").exists()
    train.pretrain(cfg, name="resume-cut", resume=True, progress=False)

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    _tensors_equal(a["model"], b["model"], "model")
    assert any(k.startswith("teacher.") for k in a["model"]) and "center.center" in a["model"]
    _tensors_equal(a["optimizer"]["state"], b["optimizer"]["state"], "optimizer")
    steps = [r["step"] for r in map(json.loads, (cut / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]


def test_non_finite_loss_stops_and_keeps_last_checkpoint(smoke_cfg, smoke_store, monkeypatch):
    cfg = _cfg(smoke_cfg, "train.steps=4", "train.checkpoint_every=2", "diagnostics.every=0")
    step_fn = SimCLR.training_step

    def poisoned(self, views, step):
        loss, logs = step_fn(self, views, step)
        return (loss * float("nan"), logs) if step == 3 else (loss, logs)
    monkeypatch.setattr(SimCLR, "training_step", poisoned)
    with pytest.raises(FloatingPointError) as err:
        train.pretrain(cfg, name="nonfinite", progress=False)
    msg = str(err.value)
    assert "step 3" in msg and "loss=nan" in msg and "(step 2)" in msg, msg
    run = runs.runs_dir() / "nonfinite"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (run / "DONE").exists() and not (run / "lock").exists()


def test_huge_learning_rate_is_caught(smoke_cfg, smoke_store):
    cfg = _cfg(smoke_cfg, "method.name=vicreg", "train.lr=1e30", "train.warmup_steps=0", "train.steps=4",
               "train.grad_clip=0", "diagnostics.every=0")
    with pytest.raises(FloatingPointError, match="non-finite loss at step"):
        train.pretrain(cfg, name="huge-lr", progress=False)


def test_lock_refuses_a_second_writer_and_clears_a_stale_one(smoke_cfg, smoke_store):
    import socket

    cfg = _cfg(smoke_cfg, "train.steps=1", "diagnostics.every=0")
    run = runs.runs_dir() / "locked"
    run.mkdir(parents=True, exist_ok=True)
    lock = run / "lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(runs.RunLockedError, match="locked by process"):
        train.pretrain(cfg, name="locked", progress=False)
    assert lock.exists()  # another writer's lock is left alone
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with pytest.warns(UserWarning, match="stale lock"):
        train.pretrain(cfg, name="locked", progress=False)
    assert (run / "DONE").exists() and not lock.exists()


@pytest.mark.parametrize("optimizer", ["adamw", "lars"])
def test_weight_decay_only_on_matrices(smoke_cfg, optimizer):
    method = build_method(replace(smoke_cfg, method=replace(smoke_cfg.method, name="byol")))
    opt = train.build_optimizer(method, optimizer, lr=1e-3, weight_decay=0.1)
    decayed = [p for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    plain = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and plain
    assert all(p.ndim >= 2 for p in decayed) and all(p.ndim < 2 for p in plain)
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert {id(p) for p in decayed + plain} == trainable  # the EMA teacher is not optimised
    with pytest.raises(ValueError, match="adamw"):
        train.build_optimizer(method, "sgdx", lr=1e-3, weight_decay=0.1)


def test_learning_rate_schedule():
    lr = [train.learning_rate(s, 1.0, 10, 110) for s in range(1, 111)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[59] == pytest.approx(0.5) and lr[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lr[9:], lr[10:]))


def test_run_name(smoke_cfg):
    a = runs.run_name(smoke_cfg)
    assert a == runs.run_name(smoke_cfg) and a.startswith("smoke-synth-simclr-reference-")
    assert runs.run_name(apply_overrides(smoke_cfg, ["method.fidelity=paper-code"])) != a
    assert runs.run_name(apply_overrides(smoke_cfg, ["probe.hidden=7"])) == a  # evaluation settings do not retrain


def test_non_finite_step_skipped_when_asked(smoke_cfg, smoke_store, monkeypatch):
    """train.nonfinite=skip: the poisoned step changes no weight (as GradScaler skips), is
    counted in metrics, and the run finishes; the other steps train as usual."""
    step_fn = SimCLR.training_step

    def poisoned(self, views, step):
        loss, logs = step_fn(self, views, step)
        return (loss * float("nan"), logs) if step == 2 else (loss, logs)

    base = ("train.steps=2", "train.log_every=1", "train.checkpoint_every=1", "diagnostics.every=0",
            "train.nonfinite=skip", "train.deterministic=true")
    clean = train.pretrain(_cfg(smoke_cfg, *base[:-2], "train.steps=1", "train.deterministic=true"),
                           name="skip-ref", progress=False)
    monkeypatch.setattr(SimCLR, "training_step", poisoned)
    run = train.pretrain(_cfg(smoke_cfg, *base), name="skip", progress=False)
    assert (run / "DONE").exists()
    rows = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert [r["skipped"] for r in rows] == [0, 1]
    after_1 = torch.load(clean / "checkpoint.pt", weights_only=True)["model"]
    after_2 = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    for k, v in after_1.items():  # step 2 was skipped: only EMA/BN buffers may move, no weight
        if not k.startswith("teacher.") and "running" not in k and "num_batches" not in k:
            assert torch.equal(after_2[k], v), k
    with pytest.raises(ValueError, match="train.nonfinite"):
        train.pretrain(_cfg(smoke_cfg, "train.nonfinite=ignore"), name="bad", progress=False)
