"""Figures of the comparison, drawn from result files only (never from live objects).

A report folder written by `workbench.evaluate.run_evaluation` holds ``results.csv``,
``bootstrap.npz`` (per-resample values, keys ``<fraction>|<metric>|<method>``), ``limited.csv``
and ``pairs.csv``. Every figure takes one report folder or several (one task each) and returns
a matplotlib Figure; ``save=`` also writes a PNG. Methods keep the same order and colour in
every figure (`METHOD_ORDER`, `METHOD_COLORS`), baselines included.

`controls` is the notebooks' interactive panel (sliders, menus), written so that notebooks run
headless in the tests and in ``make demo``.
"""

from __future__ import annotations

from pathlib import Path

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from workbench.baselines import BASELINES
from workbench.methods import METHODS

METHOD_ORDER = (*METHODS, *BASELINES)  # the registries' order: the five methods, then the floors
METHOD_COLORS = {
    "simclr": "#1f77b4", "dino": "#ff7f0e", "barlow_twins": "#2ca02c", "byol": "#d62728", "vicreg": "#9467bd",
    "supervised": "#4d4d4d", "random": "#a6a6a6", "random-target": "#c7c7c7", "handcrafted": "#8c564b",
}
METHOD_LABELS = {"simclr": "contrastive (SimCLR)", "dino": "clustering (DINO)", "barlow_twins": "Barlow Twins",
                 "byol": "BYOL", "vicreg": "VICReg", "supervised": "supervised", "random": "random init",
                 "random-target": "random init, BatchNorm on the evaluated set",
                 "handcrafted": "log-mel stats"}
METRIC_LABELS = {"roc_auc": "macro ROC-AUC", "pr_auc": "macro mAP", "accuracy": "accuracy"}


def _base(method: str) -> str:
    return method.split("/")[0].split("#")[0]


def method_color(method: str) -> str:
    """The fixed colour of a method (a fidelity or duplicate suffix keeps its method's colour)."""
    return METHOD_COLORS.get(_base(method), "#17becf")


def method_label(method: str) -> str:
    """The display name: ``dino/paper-code`` -> "clustering (DINO), paper-code"."""
    base = _base(method)
    suffix = method[len(base):].lstrip("/")
    return METHOD_LABELS.get(base, base) + (f", {suffix}" if suffix else "")


def order_methods(methods) -> list[str]:
    """Methods sorted by `METHOD_ORDER` (unknown names last, alphabetically)."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(set(methods), key=lambda m: (rank.get(_base(m), len(rank)), m))


def _dirs(reports) -> list[Path]:
    return [Path(r) for r in (reports if isinstance(reports, (list, tuple)) else [reports])]


def _task(report: Path, table: pd.DataFrame) -> str:
    row = table.iloc[0]
    return f"{row['dataset']}" + (f" ({row['variant']})" if row["variant"] not in ("default", "") else "")


def _finish(fig, save) -> plt.Figure:
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig


def dot_plot(reports, fraction: float = 1.0, save: str | Path | None = None) -> plt.Figure:
    """Fig. 1: one panel per task and metric; one dot per bootstrap resample, the bootstrap mean
    as a black-edged marker, one colour per method."""
    panels = []
    for rep in _dirs(reports):
        table = pd.read_csv(rep / "results.csv")
        z = np.load(rep / "bootstrap.npz")
        for metric in table.metric.unique():
            sub = table[(table.metric == metric) & (np.isclose(table.fraction, fraction))]
            values = {m: z[f"{fraction}|{metric}|{m}"] for m in sub.method}
            panels.append((_task(rep, table), metric, values))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    rng = np.random.default_rng(0)  # jitter only
    for ax, (task, metric, values) in zip(axes[0], panels):
        methods = order_methods(values)
        for i, m in enumerate(methods):
            v = values[m]
            ax.scatter(i + rng.uniform(-0.25, 0.25, len(v)), v, s=4, alpha=0.25, color=method_color(m), linewidths=0)
            ax.scatter([i], [np.nanmean(v)], s=70, color=method_color(m), edgecolors="black", zorder=3)
        ax.set_xticks(range(len(methods)), [method_label(m) for m in methods], rotation=45, ha="right")
        ax.set_title(f"{task}: {METRIC_LABELS.get(metric, metric)}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, save)


def limited_data_plot(reports, save: str | Path | None = None) -> plt.Figure:
    """Fig. 2: test metric against the share of train data (log x); line = mean over draws,
    band = min..max over draws, one colour per method."""
    panels = []
    for rep in _dirs(reports):
        table = pd.read_csv(rep / "results.csv")
        lim = pd.read_csv(rep / "limited.csv")
        for metric in lim.metric.unique():
            panels.append((_task(rep, table), metric, lim[lim.metric == metric]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4), squeeze=False)
    for ax, (task, metric, lim) in zip(axes[0], panels):
        for m in order_methods(lim.method):
            g = lim[lim.method == m].groupby("fraction")["value"]
            x = np.array(sorted(g.groups))
            ax.plot(x, g.mean().loc[x], marker="o", color=method_color(m), label=method_label(m))
            ax.fill_between(x, g.min().loc[x], g.max().loc[x], color=method_color(m), alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        fractions = sorted(lim.fraction.unique())
        ax.set_xticks(fractions, [f"{100 * f:g} %" for f in fractions])
        ax.minorticks_off()
        draws = lim[lim.fraction < 1].draw.nunique()
        ax.set_xlabel("share of train tracks")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(f"{task}: mean of {draws} draws, band min..max", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _finish(fig, save)


def paired_difference_plot(reports, save: str | Path | None = None) -> plt.Figure:
    """Each method minus the best method (highest bootstrap mean) per task and metric, with the
    paired 95 % interval of the difference (from pairs.csv)."""
    panels = []
    for rep in _dirs(reports):
        table = pd.read_csv(rep / "results.csv")
        pairs = pd.read_csv(rep / "pairs.csv")
        full = table[np.isclose(table.fraction, 1.0)]
        for metric in pairs.metric.unique():
            f = full[full.metric == metric]
            best = f.loc[f["mean"].idxmax(), "method"]
            d = pairs[(pairs.metric == metric) & (pairs.method_b == best)]
            panels.append((_task(rep, table), metric, best, d))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4), squeeze=False)
    for ax, (task, metric, best, d) in zip(axes[0], panels):
        methods = [m for m in order_methods(d.method_a)]
        for i, m in enumerate(methods):
            r = d[d.method_a == m].iloc[0]
            ax.errorbar([r.diff_mean], [i], xerr=[[r.diff_mean - r.ci_low], [r.ci_high - r.diff_mean]], fmt="o",
                        color=method_color(m), capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(methods)), [method_label(m) for m in methods])
        ax.invert_yaxis()
        ax.set_xlabel(f"{METRIC_LABELS.get(metric, metric)} minus {method_label(best)}")
        ax.set_title(f"{task}: {METRIC_LABELS.get(metric, metric)}")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, save)


def _arm_colors(arms) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {arm: palette[i % len(palette)] for i, arm in enumerate(dict.fromkeys(arms))}


def study_timeline(report, panels, save: str | Path | None = None) -> plt.Figure:
    """The clustering study's ``timeline.csv`` (`workbench.study`): one panel per (column,
    title) of ``panels`` against the training step; each arm's seeds thin, their mean thick."""
    rows = pd.read_csv(Path(report) / "timeline.csv")
    panels = [(c, t) for c, t in panels if c in rows and rows[c].notna().any()]
    colors = _arm_colors(rows.arm)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (column, title) in zip(axes[0], panels):
        for arm, g in rows.groupby("arm", sort=False):
            if not g[column].notna().any():
                continue
            for _, s in g.groupby("seed"):
                ax.plot(s.step, s[column], color=colors[arm], lw=0.7, alpha=0.45)
            mean = g.groupby("step")[column].mean()
            ax.plot(mean.index, mean.values, color=colors[arm], lw=2.2, label=arm)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, save)


def arm_difference_plot(report, save: str | Path | None = None) -> plt.Figure:
    """The clustering study's ``arms.csv``: each arm minus its base, mean over seeds, with the
    95 % interval over test resamples and seeds (`workbench.study.seed_paired_difference`)."""
    table = pd.read_csv(Path(report) / "arms.csv").dropna(subset=["diff_to_base"])
    metrics = list(dict.fromkeys(table.metric))
    colors = _arm_colors(pd.read_csv(Path(report) / "arms.csv").arm)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 0.5 * table.arm.nunique() + 1.6),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        t = table[table.metric == metric].reset_index(drop=True)
        for i, r in t.iterrows():
            ax.errorbar(r.diff_to_base, i, xerr=[[r.diff_to_base - r.diff_ci_low], [r.diff_ci_high - r.diff_to_base]],
                        fmt="o", color=colors[r.arm], capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(t)), [f"{a} ({c} collapsed)" if isinstance(c, str) and c else a
                                      for a, c in zip(t.arm, t.collapsed)])
        ax.set(xlabel=f"{METRIC_LABELS.get(metric, metric)} minus {t.base.iloc[0] if len(t) else ''}")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, save)


def time_to_accuracy(table: pd.DataFrame, column: str = "valid_mlp", save: str | Path | None = None) -> plt.Figure:
    """`workbench.tuning.run_input_study`'s ``runs.csv``: each input's valid figure against the
    seconds its training steps took (one line per input family, its step counts written on the
    points), beside that input's floors (dashed: log-mel statistics, dotted: random init)."""
    runs, floors = table[table.steps.notna()], table[table.steps.isna()]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = _arm_colors(runs.family)
    for family, g in runs.groupby("family", sort=False):
        g = g.sort_values("train_seconds")
        ax.plot(g.train_seconds, g[column], "o-", color=colors[family], label=family)
        for _, r in g.iterrows():
            ax.annotate(f"{int(r.steps)}", (r.train_seconds, r[column]), textcoords="offset points",
                        xytext=(4, -11), fontsize=7, color=colors[family])
        f = floors[floors.family == family].set_index("encoder")[column]
        for encoder, style in (("handcrafted", "--"), ("random", ":")):
            if encoder in f:
                ax.axhline(f[encoder], ls=style, lw=1, color=colors[family])
    ax.set(xscale="log", xlabel="seconds of training steps (one core)",
           ylabel=f"{column}: macro ROC-AUC on the valid split",
           title="Time to accuracy; dashed: log-mel statistics, dotted: random init, at each input")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, save)


def controls(render, render_now: bool = True, **widgets_by_name):
    """Interactive controls for ``render(**values)``, safe to execute headless.

    With ``render_now`` ``render`` is called once with the widgets' current values into the
    cell's own output; then a panel of the widgets and an Output area is displayed, and moving a
    widget re-renders into that area. Pass ``render_now=False`` when the cell above already shows
    the default (a static view of every option, which is what the HTML copies keep: widgets
    need a kernel). Unlike ``ipywidgets.interact`` nothing is written into an Output widget
    while the cell executes: nbclient (as `make test` and `make notebooks` run notebooks) can
    deadlock on that, jupyter/nbconvert#2029 (interact with Audio) and #1921 (interact with a
    plot). Returns the panel (a VBox).
    """
    out = ipywidgets.Output()

    def values() -> dict:
        return {name: w.value for name, w in widgets_by_name.items()}

    def rerender(_change) -> None:
        with out:
            out.clear_output(wait=True)
            render(**values())

    if render_now:
        render(**values())
    for w in widgets_by_name.values():
        w.observe(rerender, names="value")
    panel = ipywidgets.VBox([*widgets_by_name.values(), out])
    display(panel)
    return panel
