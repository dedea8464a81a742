"""The demo job (`workbench.report.run_demo`, ``make demo``) end to end in the smoke profile."""

from __future__ import annotations

import dataclasses
import json

from workbench import report, runs
from workbench.diagnostic_plots import collapse_configs
from workbench.evaluate import seed_configs


def test_demo_job_trains_side_by_side_evaluates_both_test_sets(smoke_cfg, smoke_store, monkeypatch, capsys):
    """On 2 cores with ``train.threads`` 1 the five methods and notebook 03's collapse runs train
    in one queue, two at a time; the report and the transfer report are written; the notebooks
    (executed by tests/test_notebooks.py) are stubbed here and find every run they need done."""
    cfg = dataclasses.replace(smoke_cfg, train=dataclasses.replace(smoke_cfg.train, threads=1))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    executed = []
    monkeypatch.setattr(report, "execute_notebook", lambda path, **kw: executed.append(path.stem))
    out = report.run_demo(cfg)
    text = capsys.readouterr().out
    needed = seed_configs(cfg) + list(collapse_configs(cfg).values())
    assert all((runs.runs_dir() / runs.run_name(c) / "DONE").exists() for c in needed)
    if "training" in text:  # another test may have trained some of them already
        assert "at a time (1 thread each)" in text
    summary = json.loads((out / "demo_timings.json").read_text())
    assert {"corpus", "pretrain", "evaluate", "evaluate:transfer", "total"} <= set(summary["timings_s"])
    assert [p.rsplit("/", 1)[-1] for p in summary["runs"]] == [runs.run_name(c) for c in seed_configs(cfg)]
    for folder in (out, out.parent / f"transfer-{cfg.profile}"):
        assert (folder / "results.csv").is_file() and (folder / "fig1_dots.png").is_file(), folder
    assert executed[:2] == ["00_corpus", "01_augmentations"] and "03_collapse" in executed
