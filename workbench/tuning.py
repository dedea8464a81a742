"""Equal tuning: every method's settings chosen on the valid split, with the same grid and seeds.

``python -m workbench tune --profile demo`` trains, for every method of `METHODS`, each setting of
`GRID` (the same for every method) with the same `SEEDS` pretraining seeds, reads the valid-split
table of every run (`validate.validation_table`: the cross-validated MLP probe and the k-NN probe,
on the corpus and the transfer set; the test split is never embedded), and writes into
``results/tuning-<profile>/``, stamped (`results.stamp`):

- ``runs.csv``: one row per run (method, setting, seed, its valid figures, head parameters);
- ``settings.csv``: per method and setting, the mean and the spread over seeds;
- ``chosen.csv``: per method, the setting with the best mean corpus valid MLP figure.

`config.TUNED` carries the chosen settings into the profile and `config.for_method` applies them,
so the demo trains each method with the setting this table chose.

``python -m workbench tune --inputs --profile demo`` chooses the profile's input the same way, by
time to accuracy: SimCLR (seed 0, its tuned setting) at each input of `INPUTS` (segment length,
mel bins, where views are cut, which splits pretraining reads, steps), each run's valid figures
beside the seconds its training steps took and the floors of its input, into
``results/inputs-<profile>/`` (``runs.csv``, ``time_to_accuracy.png``, stamped).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from workbench import plots
from workbench.config import RunConfig, apply_overrides, for_method
from workbench.files import save_text
from workbench.jobs import ensure_runs
from workbench.methods import METHODS
from workbench.results import RESULTS_DIR, stamp
from workbench.runs import read_metrics
from workbench.validate import validation_table

GRID: dict[str, tuple[str, ...]] = {"train.lr": ("3e-4", "1e-3", "3e-3")}  # AdamW's learning rate, 3 values
SEEDS = (0, 1)  # the same pretraining seeds for every method and setting
SELECT_ON = "valid_mlp"  # the corpus valid figure that chooses (cross-validated, never test)


def settings() -> list[tuple[str, ...]]:
    """Every setting of `GRID`, as overrides (``("train.lr=3e-4",)``, ...)."""
    out: list[tuple[str, ...]] = [()]
    for key, values in GRID.items():
        out = [(*o, f"{key}={v}") for o in out for v in values]
    return out


def tuning_configs(cfg: RunConfig) -> list[tuple[str, str, int, RunConfig]]:
    """(method, setting label, seed, config) for every method, setting and seed."""
    return [(m, " ".join(s), seed, apply_overrides(for_method(cfg, m, tuned=False), [*s, f"train.seed={seed}"]))
            for m in METHODS for s in settings() for seed in SEEDS]


def run_tuning(cfg: RunConfig, out_root: Path = RESULTS_DIR, progress: bool = True) -> Path:
    """Train the grid (finished runs are reused), read the valid table, write the three files."""
    grid = tuning_configs(cfg)
    runs = ensure_runs([c for *_, c in grid], progress=progress)
    table = validation_table(cfg, runs, progress=progress).set_index("run")
    rows = pd.DataFrame([dict(method=m, setting=s, seed=seed, **table.loc[Path(r).name].drop("encoder").to_dict(),
                              run=Path(r).name) for (m, s, seed, _), r in zip(grid, runs)])
    figures = [c for c in rows.columns if c.endswith(("_mlp", "_knn"))]
    spread = rows.groupby(["method", "setting"], sort=False)[figures].agg(["mean", "std"])
    spread.columns = [f"{c}_{stat}" for c, stat in spread.columns]
    spread = spread.reset_index()
    best = spread.loc[spread.groupby("method", sort=False)[f"{SELECT_ON}_mean"].idxmax()]
    out = Path(out_root) / f"tuning-{cfg.profile}"
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / "runs.csv", rows.to_csv(index=False))
    save_text(out / "settings.csv", spread.to_csv(index=False))
    save_text(out / "chosen.csv", best.to_csv(index=False))
    stamp(out, cfg.profile, f"python -m workbench tune --profile {cfg.profile}",
          extra={"grid": GRID, "seeds": list(SEEDS), "select_on": SELECT_ON})
    return out


# The inputs the demo's was chosen among (`run_input_study`), each as overrides of the profile:
# the paper's input (4 s x 128 mel bins, each view's log-mel from its waveform, the pool only) at
# the old demo's 200 steps and at 800, and the demo-scale input (2 s x 64 bins cut from each
# track's log-mel) at 200 to 1600 steps, with pool and train audio, and at 800 with the pool only;
# then the demo's own views (that input with the level-tilt chain) at 800, 1600 and 4000 steps.
_PAPER_INPUT = ("audio.n_mels=128", "audio.segment_seconds=4.0", "views.crop=samples", "views.augment=paper",
                'corpus.pretrain_splits=["pool"]')
_DEMO_INPUT = ("audio.n_mels=64", "audio.segment_seconds=2.0", "views.crop=frames", "views.augment=paper")
INPUTS: dict[str, tuple[str, ...]] = {
    "4 s x 128, pool, 200 steps": (*_PAPER_INPUT, "train.steps=200", "train.warmup_steps=20"),
    "4 s x 128, pool, 800 steps": (*_PAPER_INPUT, "train.steps=800", "train.warmup_steps=80"),
    "2 s x 64, pool, 800 steps": (*_DEMO_INPUT, 'corpus.pretrain_splits=["pool"]', "train.steps=800",
                                  "train.warmup_steps=80"),
    **{f"2 s x 64, pool + train, {n} steps": (*_DEMO_INPUT, 'corpus.pretrain_splits=["pool", "train"]',
                                              f"train.steps={n}", f"train.warmup_steps={n // 10}")
       for n in (200, 400, 800, 1600)},
    # the demo's input and chain at its 800 steps, and at 2x and 5x (the laptop profile's) steps:
    # how far more pretraining carries the valid figures at this input
    **{f"2 s x 64, pool + train, level-tilt, {n} steps": (*_DEMO_INPUT, 'corpus.pretrain_splits=["pool", "train"]',
                                                          "views.augment=level-tilt", f"train.steps={n}",
                                                          f"train.warmup_steps={n // 10}")
       for n in (800, 1600, 4000)},
}
INPUT_METHOD = "simclr"


def training_seconds(run: Path) -> float:
    """Seconds a run's training steps took: per logged interval, its clips over its clips/s
    (set-up, diagnostics and checkpoints left out, as the trainer leaves them out of clips/s)."""
    rows = read_metrics(run)
    rows = rows[rows.kind == "train"].sort_values("step")
    cfg = json.loads((Path(run) / "config.json").read_text())
    clips = rows.step.diff().fillna(rows.step.iloc[0]) * cfg["train"]["batch_size"] * cfg["views"]["n_views"]
    return float((clips / rows.clips_per_s).sum())


def run_input_study(cfg: RunConfig, out_root: Path = RESULTS_DIR, progress: bool = True) -> Path:
    """Train `INPUT_METHOD` at every input of `INPUTS` and write ``runs.csv``: per run its input
    (``family``: the input without the step count), steps, training seconds and valid figures;
    per family the floors at that input (``steps`` empty). Then the time-to-accuracy figure."""
    cfgs = {label: apply_overrides(for_method(cfg, INPUT_METHOD), list(o)) for label, o in INPUTS.items()}
    runs = dict(zip(cfgs, ensure_runs(list(cfgs.values()), progress=progress)))
    rows, seen = [], set()
    for label, c in cfgs.items():
        family = label.rsplit(", ", 1)[0]
        first = family not in seen
        seen.add(family)
        table = validation_table(c if first else replace(c, eval=replace(c.eval, baselines=())), [runs[label]],
                                 progress=progress)
        for _, r in table.iterrows():
            run = r.run != ""
            if run or first:
                rows.append({"family": family, "input": label if run else family,
                             "steps": c.train.steps if run else None,
                             "train_seconds": training_seconds(runs[label]) if run else None,
                             **r.drop("run").to_dict(), "run": r.run})
    table = pd.DataFrame(rows)
    out = Path(out_root) / f"inputs-{cfg.profile}"
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / "runs.csv", table.to_csv(index=False))
    plots.time_to_accuracy(table, save=out / "time_to_accuracy.png")
    stamp(out, cfg.profile, f"python -m workbench tune --inputs --profile {cfg.profile}",
          extra={"inputs": {k: list(v) for k, v in INPUTS.items()}, "method": INPUT_METHOD})
    return out
