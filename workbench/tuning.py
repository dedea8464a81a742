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
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.config import RunConfig, apply_overrides, for_method
from workbench.files import save_text
from workbench.jobs import ensure_runs
from workbench.methods import METHODS
from workbench.results import RESULTS_DIR, stamp
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
