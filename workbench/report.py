"""Report writers: Markdown tables and the report files of an evaluation and of the study, and
the stage timer whose figures they print.

`write_report` writes report.md (and results.md, config.json, timings.json) into an evaluation
folder (`workbench.evaluate.run_evaluation`); `study_report` is the study's study.md
(`workbench.study.run_study`). Every table is read from the files the evaluation wrote.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from workbench.config import RunConfig, config_hash, to_dict
from workbench.data.store import AudioStore
from workbench.files import save_text
from workbench.methods import METHODS


class StageTimes(dict):
    """{stage: seconds} of a job; ``with times("name"):`` adds the wall time of a stage, and
    ``total()`` returns a copy with ``total``: the seconds since the timer was made."""

    def __init__(self) -> None:
        super().__init__()
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t

    def total(self) -> dict[str, float]:
        return {**self, "total": time.perf_counter() - self.start}


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (floats to 4 decimals), without the optional tabulate dependency."""
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, (float, np.floating)) else str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join("| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False))


def csv_section(out: Path, name: str, title: str) -> str:
    """A report section with the table of ``out/name``; empty when the file was not written."""
    path = out / name
    return f"## {title}\n\n{markdown_table(pd.read_csv(path))}\n\n" if path.exists() else ""


SEEDS_TITLE = "Pretraining seeds (full data): the mean over seeds, its interval with tracks and seeds resampled"


def interval(point: float, low: float, high: float, signed: bool = False) -> str:
    """``0.784 [0.762, 0.805]`` (``signed``: ``+0.012 [-0.001, +0.025]``), three decimals, never "-0.000"."""
    f = "{:+.3f}" if signed else "{:.3f}"
    point, low, high = (round(v, 3) + 0.0 for v in (point, low, high))  # + 0.0: never "-0.000"
    return f"{f.format(point)} [{f.format(low)}, {f.format(high)}]"


def verdict(low: float, high: float) -> str:
    """A paired difference's 95 % interval read: "above" or "below" 0 when it excludes 0, else "level with"."""
    return "above" if low > 0 else "below" if high < 0 else "level with"


def comparison_summary(out: Path, metric: str = "roc_auc") -> list[str]:
    """What an evaluation folder's full-data comparison shows, in sentences whose every number is
    read from its results.csv and pairs.csv: the best SSL method against log-mel statistics, each
    SSL method against the random floor, the supervised ceiling. "above" / "below" when the
    paired 95 % interval excludes 0, "level with" when it does not. Baselines absent from the
    folder are left out."""
    table = pd.read_csv(out / "results.csv")
    full = table[(table.fraction == 1.0) & (table.metric == metric)].set_index("method")
    pairs = pd.read_csv(out / "pairs.csv")
    pairs = pairs[pairs.metric == metric].set_index(["method_a", "method_b"])
    ssl = [m for m in METHODS if m in full.index]
    if not ssl:
        return []

    def diff(a: str, b: str) -> str:
        d = pairs.loc[(a, b)]
        return f"{interval(d.diff_point, d.ci_low, d.ci_high, signed=True)}: {verdict(d.ci_low, d.ci_high)}"

    best = max(ssl, key=lambda m: full.loc[m, "mean"])
    lines = [f"best SSL method: {best} {interval(*full.loc[best, ['point', 'ci_low', 'ci_high']])}"]
    if "handcrafted" in full.index:
        lines.append(f"{best} minus log-mel statistics ({full.loc['handcrafted', 'point']:.3f}): "
                     f"{diff(best, 'handcrafted')}")
    if "random" in full.index:
        lines += [f"{m} minus the random encoder ({full.loc['random', 'point']:.3f}): {diff(m, 'random')}"
                  for m in ssl]
    if "supervised" in full.index:
        lines.append(f"supervised ({full.loc['supervised', 'point']:.3f}) minus {best}: {diff('supervised', best)}")
    return lines


def family_section(out: Path) -> str:
    """The report section of families.csv (macro ROC-AUC by tag family, paired differences to the
    floors); empty when the file was not written."""
    path = out / "families.csv"
    if not path.exists():
        return ""
    table = pd.read_csv(path)
    table = table[table.metric == "roc_auc"].drop(columns=["metric", "n_undefined_tags"])
    return ("## Results by tag family (full data, macro ROC-AUC over the family's tags; paired differences "
            f"to the floors on the same resamples)\n\n{markdown_table(table)}\n\n")


def write_report(out: Path, cfg: RunConfig, table: pd.DataFrame, timings: dict[str, float], store: AudioStore) -> None:
    """report.md of an evaluation folder (results, figures, limited data, pairs, stage timings),
    with results.md, config.json and timings.json beside it."""
    full = table[table.fraction == 1.0]
    cols = ["method", "fidelity", "metric", "point", "mean", "ci_low", "ci_high", "n_undefined_tags"]
    md_full = markdown_table(full[cols])
    lim = table.pivot_table(index=["metric", "method"], columns="fraction", values="point").round(4)
    pairs = pd.read_csv(out / "pairs.csv")
    best = {m: g.loc[g["mean"].idxmax(), "method"] for m, g in full.groupby("metric")}
    pairs = pairs[[best.get(m) == b for m, b in zip(pairs.metric, pairs.method_b)]]
    text = f"""# Downstream comparison: {cfg.data.dataset} ({cfg.profile} profile)

Store: `{store.root}` ({len(store.indices('train'))} train / {len(store.indices('valid'))} valid /
{len(store.indices('test'))} test tracks, {store.labels.shape[1]} tags). Probe protocol: `{cfg.probe.protocol}`
(hidden {cfg.probe.hidden}, dropout {cfg.probe.dropout}, Adam lr {cfg.probe.lr}, up to {cfg.probe.max_epochs}
epochs, patience {cfg.probe.patience}). Bootstrap: {cfg.eval.bootstrap_resamples} paired resamples of the test
tracks; interval = 2.5/97.5 percentiles.

Seeds: corpus {cfg.corpus.seed}, pretraining {cfg.train.seed}, probe {cfg.probe.seed}, bootstrap
{cfg.eval.bootstrap_seed}, limited-data subsets {cfg.eval.subset_seed}, baselines {cfg.eval.baseline_seed}.

## Full training data

{md_full}

![dot plot](fig1_dots.png)

![paired differences](paired_differences.png)

{csv_section(out, "results_clean.csv", "Full training data, scored against the clean tags (before label dropout)")}\
{csv_section(out, "seeds.csv", SEEDS_TITLE)}\
{family_section(out)}\
## Limited data (point estimate, mean over draws)

{markdown_table(lim.reset_index())}

![limited data](fig2_limited.png)

## Paired differences to the best method (full data; p_a_better = share of resamples where a beats b)

All ordered pairs are in pairs.csv.

{markdown_table(pairs)}

## Stage timings (s)

{markdown_table(pd.Series(timings).round(1).rename('seconds').rename_axis('stage').reset_index())}

Files: results.csv/.md, pairs.csv, limited.csv, bootstrap.npz, subsets.json, figures.
Config hash {config_hash(cfg)}; full config in config.json.
"""
    save_text(out / "results.md", markdown_table(table))
    save_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
    save_text(out / "timings.json", json.dumps(timings, indent=2))
    save_text(out / "report.md", text)


def study_report(cfg: RunConfig, seeds: int, base: str, table: pd.DataFrame, collapse: pd.DataFrame,
                 transfer: pd.DataFrame | None = None) -> str:
    """study.md of the clustering study: the arm table (ROC-AUC), the transfer set's, every run."""
    md = markdown_table
    roc = table[table.metric == "roc_auc"].drop(columns=["metric"])
    on_transfer = ("" if transfer is None else "## The same runs on the transfer set (full train labels)\n\n"
                   + md(transfer[transfer.metric == "roc_auc"].drop(columns=["metric", "collapsed"])) + "\n\n")
    return (f"# Clustering study ({cfg.profile} profile, {seeds} pretraining seeds per arm)\n\n"
            f"Test macro ROC-AUC per arm (mean and spread over seeds), collapse rate (seeds the monitor "
            f"flags at the last diagnostics step), and the paired difference to `{base}` with a 95 % "
            f"interval over test resamples and seeds.\n\n{md(roc)}\n\n{on_transfer}## Every run\n\n{md(collapse)}\n\n"
            f"Figures: timeline.png (online probe, RankMe, LiDAR, teacher entropy), arm_differences.png; "
            f"the evaluation's fig1_dots.png, fig2_limited.png, paired_differences.png.\n")
