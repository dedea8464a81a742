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
