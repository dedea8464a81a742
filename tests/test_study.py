"""The clustering study's arithmetic: arms and seeds, the seed-aware paired difference, the
collapse verdict read from run folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench import study


def test_every_arm_and_seed_is_a_distinct_run(smoke_cfg):
    from workbench.runs import run_name

    configs = study.study_configs(smoke_cfg, seeds=2)
    assert [a for a, _ in configs] == [a for a in study.ARMS for _ in range(2)]
    names = [run_name(c) for _, c in configs]
    assert len(set(names)) == len(names)
    by_arm = dict(configs[::2])
    assert by_arm["dino[sinkhorn]"].method.sinkhorn_iterations == 3 and "sinkhorn" in run_name(by_arm["dino[sinkhorn]"])
    assert (by_arm["dino/paper-code"].method.fidelity == "paper-code"
            and by_arm["dino/paper-code"].train.nonfinite == "skip")
    assert [c.train.seed for _, c in configs[:2]] == [smoke_cfg.train.seed, smoke_cfg.train.seed + 1]
    assert study.arm_of("dino[koleo]@s2") == "dino[koleo]" and study.arm_of("dino/paper-code") == "dino/paper-code"


def test_paired_difference_covers_seeds_and_resamples():
    """Arm A's two seeds sit at 1 and 3 on every resample, B at 0: the mean difference is 2 and
    the interval spans the seed lottery, [1, 3]; with one seed each it is the resampled difference."""
    r = 4000
    arrays = {"1.0|roc_auc|a": np.full(r, 1.0), "1.0|roc_auc|a@s1": np.full(r, 3.0), "1.0|roc_auc|b": np.zeros(r)}
    mean, low, high = study.seed_paired_difference(arrays, "roc_auc", ["a", "a@s1"], ["b"])
    assert mean == pytest.approx(2.0) and low == 1.0 and high == 3.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.01, r), rng.normal(0.6, 0.01, r)
    mean, low, high = study.seed_paired_difference({"1.0|m|a": a, "1.0|m|b": b}, "m", ["a"], ["b"])
    assert mean == pytest.approx(0.1, abs=1e-3)
    assert (low, high) == pytest.approx(tuple(np.percentile(a - b, [2.5, 97.5])))


def test_more_seeds_narrow_the_paired_interval():
    """The interval is that of the difference of MEANS over seeds: with seeds drawn from the same
    spread, eight seeds a side give a narrower interval than two (the old one-seed-per-resample
    interval kept the width of a single run whatever the number of seeds)."""
    rng = np.random.default_rng(1)
    r = 4000

    def width(seeds: int) -> float:
        arrays = {f"1.0|m|{arm}@s{k}": rng.normal(mu + rng.normal(0, 0.02), 0.005, r)
                  for arm, mu in (("a", 0.7), ("b", 0.68)) for k in range(seeds)}
        _, low, high = study.seed_paired_difference(arrays, "m", [f"a@s{k}" for k in range(seeds)],
                                                    [f"b@s{k}" for k in range(seeds)])
        return high - low

    assert width(8) < 0.75 * width(2)


def _run(tmp_path, name, diag_steps, warn_steps):
    run = tmp_path / name
    run.mkdir()
    rows = [{"kind": "diagnostics", "step": s, "probe_knn_auc": 0.6 + s / 1000, "embed_rank": 10.0 - s / 10,
             "dino_teacher_entropy": 0.5, "dino_ln_k": 2.0} for s in diag_steps]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    (run / "warnings.jsonl").write_text("".join(json.dumps({"step": s, "stat": "embed_rank"}) + "\n"
                                                for s in warn_steps))
    return run


def test_collapse_is_what_stays_at_the_end(tmp_path):
    runs = [_run(tmp_path, "transient", [25, 50], [25]), _run(tmp_path, "stays", [25, 50], [25, 50]),
            _run(tmp_path, "healthy", [25, 50], [])]
    table = study.collapse_table(["dino"] * 3, [0, 1, 2], runs)
    assert list(table.collapsed_at_end) == [False, True, False]
    assert list(table.ever_flagged) == [True, True, False]
    assert list(table.flagged_at_end) == ["", "embed_rank", ""]
    assert table.probe_knn_auc.tolist() == pytest.approx([0.65] * 3)
    assert table.dino_teacher_entropy_ratio.tolist() == pytest.approx([0.25] * 3)


def test_study_command_refuses_bad_seeds(capsys):
    from workbench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["study", "--profile", "smoke", "--seeds", "0"])
    assert exit_.value.code == 2 and "--seeds is 0" in capsys.readouterr().err
