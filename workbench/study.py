"""The clustering study, the paper's future work: does a remedy keep DINO from collapsing, and
does it make the embedding more useful, beyond what pretraining seeds alone change?

``python -m workbench study --profile demo --seeds 3`` trains what is missing of `ARMS` x seeds
(`workbench.jobs.ensure_runs`: finished runs are reused), evaluates every run with the frozen
MLP probe (`workbench.evaluate.run_evaluation`: dot plot, limited-data curves, paired bootstrap)
and adds, in ``data/reports/clustering-<profile>/``:

- ``collapse.csv``: per run, whether the collapse monitor fires at the run's last diagnostics
  step (a collapse that stays, not a transient on the way down from a random start), whether it
  ever fired, and the last online statistics (k-NN probe on train/valid tracks, RankMe, LiDAR,
  teacher entropy over ln K);
- ``arms_transfer.csv`` (when pretrained on the embedded corpus): the same table for the same
  runs on the transfer set (`workbench.data.transfer`, full train labels), report in ``transfer/``;
- ``arms.csv``: per arm, the collapse rate (seeds flagged at the end, out of n), the test macro
  ROC-AUC and mAP as mean and spread over seeds, and the paired difference of the means over
  seeds to plain DINO with a 95 % interval from a two-level bootstrap: the test tracks are
  resampled (the same resamples for every run) and each arm's seeds are drawn with replacement,
  so the interval covers test sampling and the seed lottery together and narrows with more seeds;
- ``timeline.csv``: every run's diagnostics rows with its arm and seed; ``timeline.png``: the
  online probe, RankMe, LiDAR and teacher entropy against the step, one
  panel each, every arm's seeds as thin lines and their mean as a thick one;
- ``arm_differences.png``: the paired differences to plain DINO with their intervals.

The arms (each a switch of `workbench.methods.DINO`, documented there with its paper):
``dino`` is the method papers' DINO (EMA center, teacher temperature warm-up, last layer frozen
for the first epoch); ``dino/paper-code`` the study's own settings (sharper teacher, no freeze:
docs/paper.md); ``dino[sinkhorn]`` Sinkhorn-Knopp centering of the teacher (SwAV, DINOv2);
``dino[koleo]`` the KoLeo spreading term (Sablayrolles et al. 2019, DINOv2); both together; and
SimCLR as the contrastive reference the study found best.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from workbench import plots
from workbench.config import RunConfig, apply_overrides, data_dir, for_method
from workbench.diagnostics import read_warnings
from workbench.evaluate import run_evaluation, transfer_config
from workbench.files import save_text
from workbench.jobs import ensure_runs
from workbench.metrics import percentile_interval, two_level_resamples
from workbench.report import study_report
from workbench.results import README_FIGURES, RESULTS_DIR, in_repository, publish, write_documents
from workbench.runs import read_metrics

# arm label (as `workbench.evaluate` labels it) -> (method, overrides as on the command line)
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "simclr": ("simclr", ()),
    "dino": ("dino", ()),
    # the study's settings give NaN gradients within the first steps (docs/paper.md 4); the
    # release trained under a GradScaler, which skips such steps: so does this arm (counted in
    # metrics.jsonl as `skipped`)
    "dino/paper-code": ("dino", ("method.fidelity=paper-code", "train.nonfinite=skip")),
    "dino[sinkhorn]": ("dino", ("method.sinkhorn_iterations=3", "method.variant=sinkhorn")),
    "dino[koleo]": ("dino", ("method.koleo_weight=0.1", "method.variant=koleo")),
    "dino[sinkhorn-koleo]": ("dino", ("method.sinkhorn_iterations=3", "method.koleo_weight=0.1",
                                      "method.variant=sinkhorn-koleo")),
}
BASE = "dino"
TIMELINE = (("probe_knn_auc", "online k-NN probe, macro ROC-AUC (train/valid)"),
            ("embed_rank", "RankMe of the backbone embedding"),
            ("embed_lidar", "LiDAR of the backbone embedding"),
            ("dino_teacher_entropy_ratio", "teacher entropy / ln K (DINO arms)"))


def study_configs(cfg: RunConfig, seeds: int, arms: dict[str, tuple[str, tuple[str, ...]]] = ARMS
                  ) -> list[tuple[str, RunConfig]]:
    """(arm, config) for every arm and pretraining seed (``train.seed``, ``+1``, ...)."""
    return [(arm, apply_overrides(for_method(cfg, method), [*changes, f"train.seed={cfg.train.seed + k}"]))
            for arm, (method, changes) in arms.items() for k in range(seeds)]


def report_dir(cfg: RunConfig) -> Path:
    """``data/reports/clustering-<profile>`` (the study's default report folder)."""
    return data_dir() / "reports" / f"clustering-{cfg.profile}"


def published_dir(cfg: RunConfig) -> Path:
    """``results/study-<profile>``: the study's tables as published (`publish_study`), tracked by
    git, so a clone that never ran the study can read its figures (notebook 07)."""
    return RESULTS_DIR / f"study-{cfg.profile}"


def arm_of(label: str) -> str:
    """``dino[koleo]@s2`` -> ``dino[koleo]``."""
    return re.sub(r"@s\d+$", "", label)


def run_study(cfg: RunConfig, seeds: int = 3, out_dir: Path | None = None, progress: bool = True,
              arms: dict[str, tuple[str, tuple[str, ...]]] = ARMS) -> Path:
    """Train what is missing, evaluate, and write the study's tables and figures (module doc)."""
    out = Path(out_dir) if out_dir else report_dir(cfg)
    configs = study_configs(cfg, seeds, arms)
    runs = ensure_runs([c for _, c in configs], progress=progress)
    # the floors that cost nothing to train (the supervised encoder, retrained per limited-data
    # draw, is the demo report's; it changes no arm's standing)
    floors = tuple(b for b in cfg.eval.baselines if b != "supervised")
    eval_cfg = replace(cfg, eval=replace(cfg.eval, baselines=floors))
    run_evaluation(eval_cfg, runs, out_dir=out, progress=progress)
    arm_names, seed_list = [arm for arm, _ in configs], [c.train.seed for _, c in configs]
    collapse = collapse_table(arm_names, seed_list, runs)
    collapse.to_csv(out / "collapse.csv", index=False)
    pd.concat([timeline_rows(r).assign(arm=a, seed=s) for a, s, r in zip(arm_names, seed_list, runs)]
              ).to_csv(out / "timeline.csv", index=False)
    base = BASE if BASE in arms else next(iter(arms))
    table = arm_table(out, collapse, base=base)
    table.to_csv(out / "arms.csv", index=False)
    transfer = None
    if cfg.data.dataset == "synth":  # the same runs on recorded instruments the corpus never used
        run_evaluation(transfer_config(eval_cfg), runs, out_dir=out / "transfer", progress=progress)
        transfer = arm_table(out / "transfer", collapse, base=base)
        transfer.to_csv(out / "arms_transfer.csv", index=False)

    for name, fig in {"timeline.png": plots.study_timeline(out, TIMELINE),
                      "arm_differences.png": plots.arm_difference_plot(out)}.items():
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plots.plt.close(fig)
    save_text(out / "study.md", study_report(cfg, seeds, BASE, table, collapse, transfer))
    if in_repository() and out_dir is None:
        publish_study(out, cfg, seeds)
    return out


def publish_study(out: Path, cfg: RunConfig, seeds: int) -> None:
    """The tables docs/study.md quotes, stamped, into ``results/study-<profile>/``, its two figures
    into ``data/readme/`` (the demo profile's under their own names), and docs/study.md's tables
    rewritten from them (for the demo profile)."""
    publish(out, f"study-{cfg.profile}", cfg.profile, f"python -m workbench study --profile {cfg.profile} "
            f"--seeds {seeds}")
    prefix = "study_" if cfg.profile == "demo" else f"{cfg.profile}_study_"
    for name in ("timeline.png", "arm_differences.png"):
        shutil.copy2(out / name, README_FIGURES / f"{prefix}{name}")
    if cfg.profile == "demo" and (RESULTS_DIR / "demo" / "results.csv").is_file():
        write_documents()


def timeline_rows(run: Path) -> pd.DataFrame:
    """The diagnostics rows of a run, with the teacher entropy as a share of ln K."""
    rows = read_metrics(run)
    rows = rows[rows.kind == "diagnostics"].copy() if len(rows) else rows
    if "dino_teacher_entropy" in rows and "dino_ln_k" in rows:
        rows["dino_teacher_entropy_ratio"] = rows.dino_teacher_entropy / rows.dino_ln_k
    return rows


def collapse_table(arms: list[str], seeds: list[int], runs: list[Path]) -> pd.DataFrame:
    """One row per run: collapsed at the end (the monitor fired at the last diagnostics step),
    ever flagged, the statistics flagged at the end, and the last online statistics."""
    rows = []
    for arm, seed, run in zip(arms, seeds, runs):
        diag = timeline_rows(run)
        last_step = int(diag.step.max()) if len(diag) else -1
        warnings = read_warnings(run)
        at_end = sorted({w["stat"] for w in warnings if w["step"] == last_step})
        last = diag.iloc[-1] if len(diag) else pd.Series(dtype=float)
        rows.append(dict(arm=arm, seed=seed, run=run.name, last_step=last_step, collapsed_at_end=bool(at_end),
                         ever_flagged=bool(warnings), flagged_at_end=" ".join(at_end),
                         **{k: float(last[k]) if k in last and pd.notna(last[k]) else float("nan")
                            for k, _ in TIMELINE}))
    return pd.DataFrame(rows)


def seed_paired_difference(arrays, metric: str, labels_a: list[str], labels_b: list[str],
                           seed: int = 0) -> tuple[float, float, float]:
    """Difference of arm A to arm B (mean over seeds) with a 95 % interval over test resamples AND
    seeds: the two-level bootstrap of each arm's mean over its seeds (`metrics.two_level_resamples`,
    seeds drawn independently for A and B) on the shared test resamples, so more seeds narrow it.
    ``arrays[f"1.0|{metric}|{label}"]``: (R,) macro metric per resample, the resamples shared by
    every label (paired)."""
    a = np.stack([arrays[f"1.0|{metric}|{lab}"] for lab in labels_a])  # (seeds A, R)
    b = np.stack([arrays[f"1.0|{metric}|{lab}"] for lab in labels_b])
    diff = (two_level_resamples(a, [seed, len(labels_a), len(labels_b), 0])
            - two_level_resamples(b, [seed, len(labels_a), len(labels_b), 1]))
    return (float(np.nanmean(a) - np.nanmean(b)), *percentile_interval(diff))


def arm_table(report: Path, collapse: pd.DataFrame, base: str = BASE) -> pd.DataFrame:
    """Per arm and metric: collapse rate, mean and spread over seeds, paired difference to ``base``."""
    results = pd.read_csv(report / "results.csv")
    full = results[results.fraction == 1.0].assign(arm=lambda d: d.method.map(arm_of))
    with np.load(report / "bootstrap.npz") as z:
        arrays = {k: z[k] for k in z.files}
    rows = []
    for (arm, metric), g in full.groupby(["arm", "metric"], sort=False):
        runs = collapse[collapse.arm == arm]
        base_labels = list(full[(full.arm == base) & (full.metric == metric)].method)
        diff = (seed_paired_difference(arrays, metric, list(g.method), base_labels)
                if arm != base and base_labels else (float("nan"),) * 3)
        rows.append(dict(arm=arm, metric=metric, seeds=len(g), mean=g.point.mean(),
                         seed_std=g.point.std(ddof=1) if len(g) > 1 else float("nan"),
                         seed_min=g.point.min(), seed_max=g.point.max(),
                         collapsed=f"{int(runs.collapsed_at_end.sum())}/{len(runs)}" if len(runs) else "",
                         diff_to_base=diff[0], diff_ci_low=diff[1], diff_ci_high=diff[2], base=base))
    return pd.DataFrame(rows)
