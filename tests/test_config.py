"""Configuration: profiles as data, overrides that refuse what they do not understand, the CLI's
one-line errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from workbench.config import PROFILES, apply_overrides, for_method, load_profile


def test_profiles_are_data_and_change_sizes_only():
    assert set(PROFILES) == {"paper", "demo", "laptop", "smoke"} and PROFILES["paper"] == {}
    demo, laptop = load_profile("demo"), load_profile("laptop")
    assert demo.encoder.width == PROFILES["demo"]["encoder"]["width"] and demo.profile == "demo"
    # laptop: the demo with five times the steps, on the same corpus (the same test split)
    assert laptop.train.steps == 5 * demo.train.steps and laptop.corpus == demo.corpus
    assert (laptop.audio, laptop.views) == (demo.audio, demo.views)
    assert (laptop.encoder, laptop.method, laptop.probe) == (demo.encoder, demo.method, demo.probe)
    # ... the supervised baseline's budget scaled with the steps, every method's tuned settings kept
    assert laptop.eval == replace(demo.eval, supervised_epochs=5 * demo.eval.supervised_epochs)
    assert laptop.train.warmup_steps / laptop.train.steps == demo.train.warmup_steps / demo.train.steps
    assert for_method(laptop, "simclr").train.lr == for_method(demo, "simclr").train.lr != laptop.train.lr
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        load_profile("tiny")


@pytest.mark.parametrize("word,value", [("true", True), ("off", False), ("1", True), ("no", False)])
def test_bool_overrides(word, value):
    assert apply_overrides(load_profile("smoke"), [f"train.compile={word}"]).train.compile is value


def test_a_misspelt_bool_is_refused():
    with pytest.raises(ValueError, match=r"override 'train.compile=flase': expected true or false, got 'flase'"):
        apply_overrides(load_profile("smoke"), ["train.compile=flase"])


def test_for_method():
    cfg = for_method(load_profile("smoke"), "byol", use_predictor=False)
    assert cfg.method.name == "byol" and cfg.method.use_predictor is False


def test_cli_user_error_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "workbench", "pretrain", "--profile", "smoke", "--method", "simclr",
                          "--set", "train.compile=flase"], capture_output=True, text=True,
                         env={"WORKBENCH_DATA": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: override 'train.compile=flase': expected true or false, got 'flase'"


def test_cli_validate_names_a_missing_run_in_one_line(tmp_path):
    missing = tmp_path / "runs" / "no-such-run"
    out = subprocess.run([sys.executable, "-m", "workbench", "validate", "--profile", "smoke", "--runs", str(missing)],
                         capture_output=True, text=True, env={"WORKBENCH_DATA": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {missing}: neither a run folder nor a released checkpoint (.pt)"


class _Payload:
    """A pickled object that is not a tensor: what a checkpoint carrying code looks like."""

    def __reduce__(self):
        return (print, ("this would have run",))


@pytest.mark.parametrize("kind", ["untrusted", "truncated"])
def test_cli_names_an_untrusted_or_damaged_checkpoint_in_one_line(tmp_path, kind):
    """A released checkpoint with a pickled object, or a truncated one, is one line naming the file
    and what is wrong (never torch's advice to load it with weights_only=False); --debug shows the
    traceback."""
    import torch

    path = tmp_path / "simclr.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload()}, path)
    if kind == "truncated":
        torch.save({"model": {"w": torch.zeros(64)}}, path)
        path.write_bytes(path.read_bytes()[:200])
    cmd = [sys.executable, "-m", "workbench", "validate", "--profile", "smoke", "--runs", str(path)]
    env = {"WORKBENCH_DATA": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: checkpoint {path} is damaged")
    assert "weights_only" not in out.stderr and "this would have run" not in out.stdout + out.stderr
    if kind == "untrusted":
        assert "refused unread" in out.stderr
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DamagedCheckpointError" in debug.stderr
