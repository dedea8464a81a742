"""Metrics and the paired bootstrap against scikit-learn and known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from workbench.metrics import (
    accuracy,
    average_precision,
    bootstrap,
    resample_indices,
    roc_auc,
    tag_metrics,
    tagging_metrics,
)


def _data(n=200, k=8, seed=0, decimals=1):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.05, 0.5, k)).astype(np.uint8)
    s = np.round(rng.random((n, k)) + 0.4 * y, decimals)  # rounding makes many ties
    return y, s


@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_per_tag_metrics_match_sklearn_with_ties(decimals):
    y, s = _data(decimals=decimals)
    assert np.allclose(roc_auc(y, s), [roc_auc_score(y[:, k], s[:, k]) for k in range(y.shape[1])], atol=1e-12)
    assert np.allclose(average_precision(y, s), [average_precision_score(y[:, k], s[:, k])
                                                 for k in range(y.shape[1])], atol=1e-12)


def test_all_tied_scores():
    y = np.array([[0], [1], [0], [1]])
    s = np.zeros((4, 1))
    assert roc_auc(y, s)[0] == pytest.approx(0.5)
    assert average_precision(y, s)[0] == pytest.approx(average_precision_score(y[:, 0], s[:, 0]))


def test_macro_micro_match_sklearn():
    y, s = _data(seed=1)
    m = tagging_metrics(y, s)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s, average="macro"), abs=1e-12)
    assert m["roc_auc_micro"] == pytest.approx(roc_auc_score(y, s, average="micro"), abs=1e-12)
    assert m["pr_auc_micro"] == pytest.approx(average_precision_score(y, s, average="micro"), abs=1e-12)
    assert m["n_undefined_tags"] == 0


def test_undefined_tags_left_out_and_counted():
    y, s = _data(seed=2)
    y[:, 0] = 0  # no positive
    y[:, 1] = 1  # no negative
    t = tag_metrics(y, s)
    assert np.isnan(t["roc_auc"][:2]).all() and np.isnan(t["pr_auc"][:2]).all()
    assert t["defined"].tolist() == [False, False] + [True] * (y.shape[1] - 2)
    m = tagging_metrics(y, s)
    assert m["n_undefined_tags"] == 2
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y[:, 2:], s[:, 2:], average="macro"))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y[:, 2:], s[:, 2:], average="macro"))
    with pytest.raises(ValueError, match="undefined for every tag"):
        tagging_metrics(np.zeros((5, 3)), np.random.default_rng(0).random((5, 3)))


def test_bootstrap_matches_sklearn_loop_and_counts_undefined():
    rng = np.random.default_rng(3)
    y = (rng.random((40, 5)) < [0.5, 0.3, 0.2, 0.05, 0.03]).astype(np.uint8)  # rare tags vanish in resamples
    y[:2, 4] = 1
    s = np.round(rng.random(y.shape) + 0.5 * y, 2)
    res = bootstrap(y, {"a": s}, n_resamples=30, seed=7)
    for r, i in enumerate(resample_indices(40, 30, 7)):
        keep = [k for k in range(5) if 0 < y[i, k].sum() < 40]
        assert res.resamples["roc_auc"]["a"][r] == pytest.approx(
            np.mean([roc_auc_score(y[i, k], s[i, k]) for k in keep]), abs=1e-9)
        assert res.resamples["pr_auc"]["a"][r] == pytest.approx(
            np.mean([average_precision_score(y[i, k], s[i, k]) for k in keep]), abs=1e-6)
        assert res.n_undefined[r] == 5 - len(keep)
    assert res.n_undefined.max() > 0
    assert res.point["roc_auc"]["a"] == pytest.approx(tagging_metrics(y, s)["roc_auc"])


def test_bootstrap_is_paired():
    y, s = _data(n=120, seed=4)
    t = s + np.random.default_rng(5).normal(0, 0.3, s.shape)
    both = bootstrap(y, {"b": t, "a": s}, n_resamples=50, seed=1)
    alone = bootstrap(y, {"a": s}, n_resamples=50, seed=1)
    same = bootstrap(y, {"a": s, "a2": s.copy()}, n_resamples=50, seed=1)
    # the resamples do not depend on which or how many methods are scored
    assert np.array_equal(both.resamples["roc_auc"]["a"], alone.resamples["roc_auc"]["a"])
    assert np.array_equal(same.resamples["pr_auc"]["a"], same.resamples["pr_auc"]["a2"])
    pairs = both.pairs()
    ab = pairs[(pairs.method_a == "a") & (pairs.method_b == "b")]
    ba = pairs[(pairs.method_a == "b") & (pairs.method_b == "a")]
    assert np.allclose(ab.p_a_better.to_numpy() + ba.p_a_better.to_numpy(), 1.0)
    d = both.resamples["roc_auc"]["a"] - both.resamples["roc_auc"]["b"]
    row = ab[ab.metric == "roc_auc"].iloc[0]
    assert row.ci_low == pytest.approx(np.percentile(d, 2.5)) and row.p_a_better == pytest.approx(np.mean(d > 0))
    summary = both.summary()
    assert set(summary.columns) >= {"method", "metric", "point", "mean", "ci_low", "ci_high", "n_undefined_tags"}


def test_bootstrap_interval_covers_known_auc_at_nominal_rate():
    # positives ~ N(d, 1), negatives ~ N(0, 1): true ROC-AUC = Phi(d / sqrt 2) for every tag
    d, n, k, sims = 1.0, 150, 2, 200
    truth = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(sims):
        y = (rng.random((n, k)) < 0.3).astype(np.uint8)
        s = rng.normal(size=(n, k)) + d * y
        r = bootstrap(y, {"m": s}, n_resamples=200, seed=i).summary()
        row = r[r.metric == "roc_auc"].iloc[0]
        covered += row.ci_low <= truth <= row.ci_high
    assert 0.88 <= covered / sims <= 0.99


def test_single_label_accuracy_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 100)
    s = rng.random((100, 4))
    s[np.arange(100), y] += 0.5
    res = bootstrap(y, {"m": s}, n_resamples=40)
    assert res.metrics == ("accuracy",)
    assert res.point["accuracy"]["m"] == pytest.approx(accuracy(y, s))
    for r, i in enumerate(resample_indices(100, 40, 0)):
        assert res.resamples["accuracy"]["m"][r] == pytest.approx(accuracy(y[i], s[i]))
