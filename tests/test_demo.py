"""The demo job (`workbench.demo.run_demo`, ``make demo``) end to end in the smoke profile."""

from __future__ import annotations

import dataclasses
import json
import shutil

from workbench import demo, runs
from workbench.config import collapse_configs
from workbench.evaluate import default_report_dir, seed_configs


def test_demo_job_trains_side_by_side_evaluates_both_test_sets(smoke_cfg, smoke_store, monkeypatch, capsys):
    """``make demo`` executes no notebook; with ``notebooks`` (``make notebooks``), on 2 cores with
    ``train.threads`` 1, the five methods and notebook 03's collapse runs train in one queue, two
    at a time; the report and the transfer report are written (the transfer's in a second
    process) by the first call and reused by the second; the notebooks
    (executed by tests/test_notebooks.py) are stubbed here and find every run they need done; they
    are executed two at a time, one thread each."""
    cfg = dataclasses.replace(smoke_cfg, train=dataclasses.replace(smoke_cfg.train, threads=1))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    executed, layout = [], []

    def execute_notebooks(paths, profile, html_dir, workers=1, threads=0):
        executed.extend(p.stem for p in paths)
        layout.append((workers, threads))
        return {p.stem: 0.0 for p in paths}

    monkeypatch.setattr(demo, "execute_notebooks", execute_notebooks)
    folders = [default_report_dir(cfg), default_report_dir(cfg).parent / f"transfer-{cfg.profile}"]
    for folder in folders:  # another test's report of this config would be reused
        shutil.rmtree(folder, ignore_errors=True)
    out = demo.run_demo(cfg)  # make demo: no notebook
    first = json.loads((out / "demo_timings.json").read_text())["timings_s"]
    assert executed == [] and not any(k.startswith("notebook") for k in first)
    assert {"corpus", "pretrain", "evaluate", "evaluate:transfer", "total"} <= set(first)
    written = [(f / "results.csv").stat().st_mtime_ns for f in folders]
    out = demo.run_demo(cfg, notebooks=True)  # make notebooks: the collapse runs, every notebook
    text = capsys.readouterr().out
    # both reports are current for these runs: reused, not evaluated again
    assert [(f / "results.csv").stat().st_mtime_ns for f in folders] == written
    needed = seed_configs(cfg) + list(collapse_configs(cfg).values())
    assert all((runs.runs_dir() / runs.run_name(c) / "DONE").exists() for c in needed)
    if "training" in text:  # another test may have trained some of them already
        assert "at a time (1 thread each)" in text
        # the baseline and the transfer set, queued after the runs, are made beside them
        assert "then 2 more jobs" in text and "finished supervised baseline (synth)" in text, text
        assert "finished transfer set" in text, text
    # make notebooks keeps the demo's timing record and writes its own, each with the machine
    assert json.loads((out / "demo_timings.json").read_text())["timings_s"] == first
    summary = json.loads((out / "notebooks_timings.json").read_text())
    assert {"corpus", "pretrain", "evaluate", "notebooks", "total"} <= set(summary["timings_s"])
    assert summary["machine"]["cpu"] and summary["machine"]["cores"] >= 1
    assert [p.rsplit("/", 1)[-1] for p in summary["runs"]] == [runs.run_name(c) for c in seed_configs(cfg)]
    for folder in (out, out.parent / f"transfer-{cfg.profile}"):
        assert (folder / "results.csv").is_file() and (folder / "fig1_dots.png").is_file(), folder
    assert executed[:2] == ["00_corpus", "01_augmentations"] and "03_collapse" in executed
    assert layout == [(2, 1)]  # the notebooks side by side too, one thread each
