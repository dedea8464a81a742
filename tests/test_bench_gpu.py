"""The prepared GPU check (`workbench.bench.gpu`), its quick path on the CPU: every section runs
and writes finite figures, with the packages the GPU machine may lack made unimportable."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

from workbench.bench import gpu, gpu_report
from workbench.methods import METHODS

TINY = replace(gpu.QUICK, corpus=dict(n_pool=8, n_train=4, n_valid=2, n_test=2, min_seconds=13.0, max_seconds=13.5),
               timed=1, pretrain_steps=2, augment_batch=4, augment_repeats=1)


def _finite_positive(row: dict, *keys: str) -> None:
    for k in keys:
        assert isinstance(row[k], (int, float)) and math.isfinite(row[k]) and row[k] > 0, (k, row)


def test_quick_check_writes_every_section_with_finite_figures(tmp_path, monkeypatch):
    for absent in ("soundfile", "umap", "torch_audiomentations"):  # as on the GPU machine
        monkeypatch.setitem(sys.modules, absent, None)
    gpu.run_check(tmp_path, quick=True, sizes=TINY)

    def refuse(constant):
        raise AssertionError(f"non-finite number {constant} in gpu_check.json")

    report = json.loads((tmp_path / "gpu_check.json").read_text(), parse_constant=refuse)
    assert {k: v["status"] for k, v in report["sections"].items()} == dict.fromkeys(
        ("corpus", "environment", "peak", "steps", "augment", "pretrain", "compile"), "ok")
    assert report["environment"]["quick"] and report["environment"]["optional"]["soundfile"] == "absent"
    _finite_positive(report["peak"], "bf16_tflops")

    rows = report["steps"]["rows"]
    assert [(r["method"], r["setting"]) for r in rows] == [(m, s) for m in METHODS for s in ("fp32", "bf16+cl")]
    compiled = report["compile"]["rows"]
    assert [r["method"] for r in compiled] == ["simclr", "dino"] and report["compile"]["backend"] == "eager"
    for r in rows + compiled:
        _finite_positive(r, "clips_per_s", "step_s", "data_s", "flops_per_step", "mfu")
        assert 0 < r["data_share"] < 1 and r["compute_s"] > 0 and r["nonfinite_losses"] == 0, r
        assert r["clips_per_step"] == 2 * 8  # smoke: batch 8 x 2 views

    for m in gpu.PRETRAIN_METHODS:
        r = report["pretrain"][m]
        assert r["steps"] == 2 and r["skipped_steps"] == 0 and r["nonfinite_rows"] == 0, r
        _finite_positive(r, "loss_first", "loss_last", "clips_per_s")

    aug = report["augment"]["rows"]
    _finite_positive(aug["ours (workbench.augment)"], "clips_per_s")
    _finite_positive(aug["mel front end (workbench.audio.MelFrontend)"], "clips_per_s")
    assert aug["torch-audiomentations"]["absent"]  # reported, not a failure

    md = (tmp_path / "gpu_check.md").read_text()
    assert all(f"| {m} | bf16+cl |" in md for m in METHODS) and "Quick run" in md


def test_clean_keeps_json_strict():
    assert gpu_report._clean({"a": float("nan"), "b": [1.5, float("inf")], "c": True}) == \
        {"a": "nan", "b": [1.5, "inf"], "c": True}
