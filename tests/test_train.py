"""The trainer: run folder, kill-and-resume equality, non-finite stop, lock, optimiser groups."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

import pytest
import torch

from workbench import jobs, optim, runs, train
from workbench.config import apply_overrides
from workbench.files import DamagedCheckpointError
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
    assert jobs.ensure_run(cfg, progress=False) == run
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        train.pretrain(cfg, progress=False)


class _Kill(Exception):
    pass


@pytest.mark.parametrize("crop", ["samples", "frames"])
def test_killed_and_resumed_equals_uninterrupted(smoke_cfg, smoke_store, crop):
    """DINO (EMA teacher, center, temperature schedule): 4 steps straight vs 3 steps, a kill
    (the checkpoint of step 2 is the last one), resume to 4: identical weights and optimiser.
    The data path prefetches 3 batches with 2 gathering threads, so at the kill batches 4-6 sit
    sampled in the queue; the straight run samples on the training thread: the same weights.
    Both view paths: each view's own log-mel, and views cut from the tracks' log-mels."""
    cfg = _cfg(smoke_cfg, "method.name=dino", "train.steps=4", "train.checkpoint_every=2", "diagnostics.every=0",
               "train.prefetch=3", "train.data_workers=2", f"views.crop={crop}")
    full = train.pretrain(apply_overrides(cfg, ["train.prefetch=0"]), name=f"resume-full-{crop}", progress=False)

    def kill_at_3(row):
        if row["step"] == 3:
            raise _Kill
    with pytest.raises(_Kill):
        train.pretrain(cfg, name=f"resume-cut-{crop}", progress=False, callback=kill_at_3)
    cut = full.parent / f"resume-cut-{crop}"
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (cut / "DONE").exists()
    train.pretrain(cfg, name=f"resume-cut-{crop}", resume=True, progress=False)

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    _tensors_equal(a["model"], b["model"], "model")
    assert any(k.startswith("teacher.") for k in a["model"]) and "center.center" in a["model"]
    _tensors_equal(a["optimizer"]["state"], b["optimizer"]["state"], "optimizer")
    steps = [r["step"] for r in map(json.loads, (cut / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]
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
    opt = optim.build_optimizer(method, optimizer, lr=1e-3, weight_decay=0.1)
    decayed = [p for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    plain = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and plain
    assert all(p.ndim >= 2 for p in decayed) and all(p.ndim < 2 for p in plain)
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert {id(p) for p in decayed + plain} == trainable  # the EMA teacher is not optimised
    with pytest.raises(ValueError, match="adamw"):
        optim.build_optimizer(method, "sgdx", lr=1e-3, weight_decay=0.1)


def test_learning_rate_schedule():
    lr = [optim.learning_rate(s, 1.0, 10, 110) for s in range(1, 111)]
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


def test_clip_rules_global_and_per_parameter():
    """Global: one norm over all gradients; per-parameter (DINO's utils.clip_gradients): each
    gradient to norm max_norm on its own; the returned norm is the global one before clipping."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))

    def grads(scale):
        for i, p in enumerate(net.parameters()):
            p.grad = torch.full_like(p, float(i + 1) * scale)
        return [p.grad.clone() for p in net.parameters()]

    class Holder(torch.nn.Module):
        clip_rule = "global"

        def __init__(self):
            super().__init__()
            self.net = net

    h = Holder()
    before = grads(10.0)
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in before]))
    got = train.clip_gradients(h, 3.0, "global")
    torch.testing.assert_close(got, total)
    for p, g in zip(net.parameters(), before):
        torch.testing.assert_close(p.grad, g * 3.0 / (total + 1e-6))
    before = grads(10.0)
    train.clip_gradients(h, 3.0, "per-parameter")
    for p, g in zip(net.parameters(), before):
        torch.testing.assert_close(p.grad.norm(), torch.tensor(3.0), rtol=1e-5, atol=1e-5)
    before = grads(1e-3)  # below the threshold: untouched
    train.clip_gradients(h, 3.0, "per-parameter")
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), before))
    before = grads(10.0)
    train.clip_gradients(h, 3.0, "none")
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), before))


def test_clip_rule_follows_the_fidelity(smoke_cfg):
    rules = {(m, f): build_method(apply_overrides(smoke_cfg, [f"method.name={m}", f"method.fidelity={f}"])).clip_rule
             for m in ("simclr", "dino") for f in ("reference", "paper-code")}
    assert rules == {("simclr", "reference"): "none", ("dino", "reference"): "per-parameter",
                     ("simclr", "paper-code"): "global", ("dino", "paper-code"): "global"}


def test_lars_trust_ratio_against_a_hand_computation():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([[0.0, 1.0]]), torch.tensor([2.0])
    opt = optim.LARS([{"params": [w], "weight_decay": 0.5}, {"params": [b], "weight_decay": 0.0}], lr=0.1,
                     momentum=0.9, eta=1e-3)
    opt.step()
    d = torch.tensor([[0.0, 1.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])  # g + wd w = [1.5, 3]
    trust = 1e-3 * 5.0 / d.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.1 * trust * d)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # vectors: no adaptation, no decay


def test_view_path_is_checked(smoke_cfg):
    with pytest.raises(ValueError, match="views.crop is 'tiles'"):
        train.pretrain(_cfg(smoke_cfg, "views.crop=tiles"), name="bad-crop", progress=False)
    with pytest.raises(ValueError, match="chain 'clmr' augments waveforms"):
        train.pretrain(_cfg(smoke_cfg, "views.crop=frames", "views.augment=clmr"), name="bad-crop", progress=False)


def test_precision_is_checked(smoke_cfg):
    with pytest.raises(ValueError, match="train.precision is 'fp8'"):
        train.pretrain(_cfg(smoke_cfg, "train.precision=fp8"), name="bad-precision", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            train.pretrain(_cfg(smoke_cfg, "train.precision=fp16"), name="bad-precision", progress=False)


def test_a_damaged_checkpoint_is_named(smoke_cfg, smoke_store):
    cfg = _cfg(smoke_cfg, "train.steps=2", "train.checkpoint_every=1", "diagnostics.every=0")
    run = train.pretrain(cfg, name="damaged", progress=False)
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    (run / "DONE").unlink()
    with pytest.raises(DamagedCheckpointError, match=f"checkpoint {ckpt} is damaged"):
        train.pretrain(cfg, name="damaged", resume=True, progress=False)
    assert not (run / "lock").exists()


def test_resume_after_an_evaluation_setting_changed_and_warnings_trimmed(smoke_cfg, smoke_store):
    cfg = _cfg(smoke_cfg, "train.steps=4", "train.checkpoint_every=2", "diagnostics.every=1")

    def kill_at_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.pretrain(cfg, name="resume-eval", progress=False, callback=kill_at_3)
    run = runs.runs_dir() / "resume-eval"
    (run / "warnings.jsonl").write_text(json.dumps({"step": 3, "stat": "x"}) + "\n"
                                         + json.dumps({"step": 1, "stat": "y"}) + "\n")
    changed = apply_overrides(cfg, ["probe.hidden=7", "eval.bootstrap_resamples=10"])
    train.pretrain(changed, name="resume-eval", resume=True, progress=False)  # the weights do not depend on them
    assert {"step": 3, "stat": "x"} not in [json.loads(row)
                                              for row in (run / "warnings.jsonl").read_text().splitlines()]
    (run / "DONE").unlink()
    with pytest.raises(ValueError, match="sections train"):
        train.pretrain(apply_overrides(cfg, ["train.lr=0.5"]), name="resume-eval", resume=True, progress=False)


def test_notebook_03_budget_does_not_rename_the_main_runs(smoke_cfg):
    """diagnostics.collapse_steps / collapse_lr / collapse_batch only size notebook 03's own runs."""
    assert runs.run_name(apply_overrides(smoke_cfg, ["diagnostics.collapse_steps=7"])) == runs.run_name(smoke_cfg)
    assert runs.run_name(apply_overrides(smoke_cfg, ["diagnostics.collapse_batch=4"])) == runs.run_name(smoke_cfg)
    assert (runs.run_name(apply_overrides(smoke_cfg, ["diagnostics.collapse_dino_momentum=0.5"]))
            == runs.run_name(smoke_cfg))
    from workbench.config import collapse_configs

    sized = collapse_configs(apply_overrides(smoke_cfg, ["diagnostics.collapse_batch=4",
                                                         "diagnostics.collapse_steps=7"]))
    assert {(c.train.batch_size, c.train.steps) for c in sized.values()} == {(4, 7)}
    assert {c.train.batch_size for c in collapse_configs(smoke_cfg).values()} == {smoke_cfg.diagnostics.collapse_batch}
    assert runs.run_name(apply_overrides(smoke_cfg, ["diagnostics.every=3"])) != runs.run_name(smoke_cfg)


def test_runs_side_by_side_equal_runs_one_after_another(smoke_cfg, smoke_store, monkeypatch, capsys):
    """`jobs.ensure_runs` with ``train.threads`` set trains the missing runs in spawned processes
    (2 cores here: two at a time); each run's weights equal those of the same run trained alone
    in this process with the same threads, and a finished run is reused."""
    cfgs = [_cfg(smoke_cfg, f"method.name={m}", "train.threads=1", "train.steps=3") for m in ("simclr", "vicreg")]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    parallel = jobs.ensure_runs(cfgs, progress=False)
    assert "training 2 runs, 2 at a time (1 thread each)" in capsys.readouterr().out
    assert [p.name for p in parallel] == [runs.run_name(c) for c in cfgs]
    assert all((p / "DONE").exists() for p in parallel)
    alone = train.pretrain(cfgs[1], name="alone-vicreg", progress=False)
    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])  # the caller's threads restored
    a = runs.load_checkpoint(parallel[1] / "checkpoint.pt")["model"]
    b = runs.load_checkpoint(alone / "checkpoint.pt")["model"]
    _tensors_equal(a, b, "side-by-side vs alone")
    stamp = (parallel[0] / "checkpoint.pt").stat().st_mtime_ns
    assert jobs.ensure_runs(cfgs, progress=False) == parallel
    assert (parallel[0] / "checkpoint.pt").stat().st_mtime_ns == stamp
