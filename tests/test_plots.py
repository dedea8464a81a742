"""Figures are drawn from result files alone (a synthetic report folder here)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from workbench import plots  # noqa: E402
from workbench.metrics import bootstrap  # noqa: E402

METHODS = ["vicreg", "simclr", "random", "handcrafted", "supervised", "dino/paper-code"]


@pytest.fixture
def report(tmp_path):
    """A report folder in the layout `run_evaluation` writes."""
    rng = np.random.default_rng(0)
    y = (rng.random((80, 6)) < 0.3).astype(np.uint8)
    rows, limited, arrays = [], [], {}
    for f in (0.1, 0.5, 1.0):
        scores = {m: y * (0.3 + 0.1 * i + f) + rng.random(y.shape) for i, m in enumerate(METHODS)}
        res = bootstrap(y, scores, n_resamples=50)
        if f == 1.0:
            res.pairs().to_csv(tmp_path / "pairs.csv", index=False)
        s = res.summary()
        for r in s.itertuples():
            arrays[f"{f}|{r.metric}|{r.method}"] = res.resamples[r.metric][r.method]
            rows.append(dict(dataset="synth", variant="default", method=r.method, fraction=f, metric=r.metric,
                             point=r.point, mean=r.mean, ci_low=r.ci_low, ci_high=r.ci_high))
            for d in range(1 if f == 1.0 else 3):
                limited.append(dict(method=r.method, fraction=f, draw=d, metric=r.metric, value=r.point + 0.01 * d))
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    pd.DataFrame(limited).to_csv(tmp_path / "limited.csv", index=False)
    np.savez(tmp_path / "bootstrap.npz", **arrays)
    return tmp_path


def test_dot_plot_from_files(report, tmp_path):
    fig = plots.dot_plot([report, report], save=tmp_path / "fig1.png")
    assert len(fig.axes) == 4  # 2 tasks x 2 metrics
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == plots.METHOD_LABELS["simclr"]  # fixed METHOD_ORDER, not file order
    assert (tmp_path / "fig1.png").stat().st_size > 0


def test_limited_and_paired_plots_from_files(report, tmp_path):
    fig = plots.limited_data_plot(report, save=tmp_path / "fig2.png")
    assert fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_lines()) == len(METHODS)
    fig = plots.paired_difference_plot(report, save=tmp_path / "diff.png")
    assert len(fig.axes) == 2
    assert (tmp_path / "fig2.png").exists() and (tmp_path / "diff.png").exists()


def test_colours_fixed_for_every_method():
    assert set(plots.METHOD_ORDER) == set(plots.METHOD_COLORS)
    assert plots.method_color("dino/paper-code") == plots.METHOD_COLORS["dino"]
    assert plots.order_methods(["random", "byol", "simclr"]) == ["simclr", "byol", "random"]


def test_controls_render_once_then_on_every_change():
    import ipywidgets

    from workbench.plots import controls

    calls = []
    slider = ipywidgets.FloatSlider(value=3.0, min=0, max=10)
    menu = ipywidgets.Dropdown(options=["a", "b"], value="a")
    panel = controls(lambda x, name: calls.append((x, name)), x=slider, name=menu)
    assert calls == [(3.0, "a")]  # the defaults, into the cell's own output
    slider.value = 5.0
    menu.value = "b"
    assert calls == [(3.0, "a"), (5.0, "a"), (5.0, "b")]
    assert panel.children[:2] == (slider, menu) and isinstance(panel.children[2], ipywidgets.Output)


def test_controls_can_leave_the_default_to_the_static_view():
    import ipywidgets

    from workbench.plots import controls

    calls = []
    menu = ipywidgets.Dropdown(options=["a", "b"], value="a")
    controls(lambda name: calls.append(name), render_now=False, name=menu)
    assert calls == []
    menu.value = "b"
    assert calls == ["b"]


def test_method_labels_keep_the_fidelity():
    from workbench.plots import method_label

    assert method_label("dino") == "clustering (DINO)"
    assert method_label("dino/paper-code") == "clustering (DINO), paper-code"
    assert method_label("mine") == "mine"


def test_every_method_and_floor_has_a_colour_and_a_label():
    """The plots' order is the registries' (`METHODS`, `BASELINES`); each name has its colour and label."""
    from workbench.baselines import BASELINES
    from workbench.methods import METHODS

    assert plots.METHOD_ORDER == (*METHODS, *BASELINES)
    assert set(plots.METHOD_COLORS) == set(plots.METHOD_LABELS) == set(plots.METHOD_ORDER)


def test_comparison_summary_reads_its_numbers_and_verdicts_from_the_files(tmp_path):
    """Each sentence's numbers are the files' and its verdict follows the paired interval: above
    when it excludes 0 from above, below from below, level with when it covers 0."""
    from workbench.report import comparison_summary

    rows = [("simclr", 0.80), ("byol", 0.70), ("random", 0.75), ("handcrafted", 0.78), ("supervised", 0.90)]
    pd.DataFrame([dict(method=m, metric="roc_auc", fraction=1.0, point=p, mean=p, ci_low=p - 0.02, ci_high=p + 0.02)
                  for m, p in rows] + [dict(method="simclr", metric="roc_auc", fraction=0.1, point=0.99, mean=0.99,
                                            ci_low=0.98, ci_high=1.0)]).to_csv(tmp_path / "results.csv", index=False)
    pairs = [("simclr", "handcrafted", 0.02, -0.01, 0.05), ("simclr", "random", 0.05, 0.03, 0.07),
             ("byol", "random", -0.05, -0.07, -0.03), ("supervised", "simclr", 0.10, 0.08, 0.12)]
    pd.DataFrame([dict(metric="roc_auc", method_a=a, method_b=b, diff_point=d, ci_low=lo, ci_high=hi)
                  for a, b, d, lo, hi in pairs]).to_csv(tmp_path / "pairs.csv", index=False)
    lines = comparison_summary(tmp_path)
    assert lines[0] == "best SSL method: simclr 0.800 [0.780, 0.820]"  # the full-data row, not the 10 % one
    assert lines[1] == "simclr minus log-mel statistics (0.780): +0.020 [-0.010, +0.050]: level with"
    assert lines[2].endswith("+0.050 [+0.030, +0.070]: above") and lines[3].endswith(": below")
    assert lines[4] == "supervised (0.900) minus simclr: +0.100 [+0.080, +0.120]: above"


def test_map_styles_tell_many_classes_apart():
    from workbench.diagnostic_plots import map_styles

    cats = [f"c{i}" for i in range(20)] + ["none", "several"]
    styles = map_styles(cats)
    pairs = [styles[c] for c in cats]
    assert len(set(pairs)) == len(cats)  # no two classes drawn alike
    assert all(styles[a][0] != styles[b][0] and styles[a][1] != styles[b][1]
               for a, b in zip(cats[:19], cats[1:20]))  # neighbours differ in colour and in marker
    assert styles["none"][0] == (0.8, 0.8, 0.8) and styles["several"][0] == (0.0, 0.0, 0.0)
