"""Tagging metrics and the paired bootstrap (DATASETS.md "Metrics" and "Bootstrap").

Definitions are scikit-learn's, written as batched array code so that a thousand bootstrap
resamples cost a few seconds instead of minutes:

- ROC-AUC of a tag: the Mann-Whitney statistic, P(score of a positive > score of a negative)
  with ties counted one half; equal to ``sklearn.metrics.roc_auc_score``.
- Average precision of a tag: the step-wise sum ``sum_n (R_n - R_{n-1}) P_n`` over the distinct
  score thresholds, equal to ``sklearn.metrics.average_precision_score`` (no interpolation).
- Macro = mean over tags; micro = the metric of all (track, tag) pairs pooled.

A tag is *evaluated* only when the set holds at least one positive and one negative track for
it. Other tags have no ROC-AUC; they are left out of both macro metrics (so macro ROC-AUC and
mAP average the same tags) and counted, never turned into 0 or 0.5. Micro metrics pool the
evaluated tags.

A bootstrap resample is a vector of integer weights (how often each track was drawn), so a
resampled metric is the weighted metric of the full set. One sort per method and tag serves
every resample; each resample then costs a gather and a cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

METRICS = ("roc_auc", "pr_auc")  # pr_auc = average precision (mAP when macro-averaged)
SINGLE_LABEL_METRICS = ("accuracy",)
INTERVAL_LEVEL = 0.95  # every interval the workbench reports: the 2.5 and 97.5 percentiles


def percentile_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap values (R,) (NaN ignored): the (1 - level) / 2 and
    (1 + level) / 2 quantiles, (2.5 %, 97.5 %) at the default level."""
    tail = 100 * (1 - level) / 2
    return float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail))


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if scores.ndim == 1:
        scores = scores[:, None]
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and scores must both be (N, K); got {y_true.shape} and {scores.shape}")
    return (y_true > 0).astype(np.float64), scores


def _tie_structure(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scores (N, K) -> order (N, K) ascending per tag, and per sorted position the first and
    last sorted position of its group of tied scores (both (N, K))."""
    n = scores.shape[0]
    order = np.argsort(scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    pos = np.arange(n)[:, None]
    new_group = np.ones_like(s, dtype=bool)
    new_group[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(new_group, pos, 0), axis=0)
    last_of_group = np.ones_like(s, dtype=bool)
    last_of_group[:-1] = s[1:] != s[:-1]
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last_of_group, pos, n - 1), 0), axis=0), 0)
    return order, start, np.ascontiguousarray(end)


def _weighted_tag_metrics(pos: np.ndarray, start: np.ndarray, end: np.ndarray,
                          w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-tag ROC-AUC and AP for a batch of weightings.

    pos: (N, K) labels in each tag's ascending score order; start, end: (N, K) tie groups;
    w: (R, N, K) integer weights (float dtype) in the same order. Returns roc (R, K), ap (R, K),
    n_pos (R, K), n_neg (R, K) in float64.

    Weights are whole numbers, so the cumulative sums are exact even in float32 (below 2**24);
    the per-tag sums are accumulated in float64.
    """
    r, n, k = w.shape
    pw = w * pos
    nw = np.subtract(w, pw, out=w)
    # cumulative sums with a leading zero row: C[start] = weight strictly before the group,
    # C[end + 1] = weight up to the end of the group
    cn = np.zeros((r, n + 1, k), w.dtype)
    cp = np.zeros((r, n + 1, k), w.dtype)
    np.cumsum(nw, axis=1, out=cn[:, 1:])
    np.cumsum(pw, axis=1, out=cp[:, 1:])
    n_pos = cp[:, -1].astype(np.float64)
    n_neg = cn[:, -1].astype(np.float64)
    idx_start = np.broadcast_to(start, w.shape)
    below = np.take_along_axis(cn, idx_start, axis=1)  # negatives scored strictly lower
    upto = np.take_along_axis(cn, np.broadcast_to(end + 1, w.shape), axis=1)
    upto += below
    upto *= pw  # a positive beats the negatives below it and half of those tied with it
    # at a group's threshold everything from the group's start upwards is predicted positive
    tp = np.take_along_axis(cp, idx_start, axis=1)
    np.subtract(cp[:, -1:], tp, out=tp)
    fp = np.subtract(cn[:, -1:], below, out=below)
    fp += tp
    np.maximum(fp, 0.5, out=fp)  # tp + fp >= 1 wherever pw > 0; elsewhere the term is 0
    tp *= pw
    tp /= fp
    with np.errstate(invalid="ignore", divide="ignore"):
        roc = 0.5 * upto.sum(1, dtype=np.float64) / (n_pos * n_neg)
        ap = tp.sum(1, dtype=np.float64) / n_pos
    return roc, ap, n_pos, n_neg


def tag_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-tag ROC-AUC and average precision on the whole set.

    y_true, scores: (N, K). Returns {"roc_auc": (K,), "pr_auc": (K,), "defined": (K,) bool};
    undefined tags (no positive or no negative) hold NaN.
    """
    y, s = _check(y_true, scores)
    order, start, end = _tie_structure(s)
    pos = np.take_along_axis(y, order, axis=0)
    roc, ap, n_pos, n_neg = _weighted_tag_metrics(pos, start, end, np.ones((1,) + y.shape))
    defined = (n_pos[0] > 0) & (n_neg[0] > 0)
    return {"roc_auc": np.where(defined, roc[0], np.nan), "pr_auc": np.where(defined, ap[0], np.nan),
            "defined": defined}


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-tag ROC-AUC (K,) as ``sklearn.metrics.roc_auc_score`` per column; NaN where undefined."""
    return tag_metrics(y_true, scores)["roc_auc"]


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-tag AP (K,) as ``sklearn.metrics.average_precision_score`` per column; NaN where undefined."""
    return tag_metrics(y_true, scores)["pr_auc"]


def tagging_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Macro and micro ROC-AUC and mAP of track-level scores (N, K), and the undefined-tag count.

    Keys: roc_auc, pr_auc (macro), roc_auc_micro, pr_auc_micro, n_tags, n_undefined_tags.
    """
    y, s = _check(y_true, scores)
    per_tag = tag_metrics(y, s)
    defined = per_tag["defined"]
    out = {"n_tags": int(y.shape[1]), "n_undefined_tags": int((~defined).sum())}
    if not defined.any():
        raise ValueError(f"no tag has both a positive and a negative track among {y.shape[0]} tracks; "
                         "ROC-AUC is undefined for every tag")
    out["roc_auc"] = float(per_tag["roc_auc"][defined].mean())
    out["pr_auc"] = float(per_tag["pr_auc"][defined].mean())
    micro = tag_metrics(y[:, defined].reshape(-1, 1), s[:, defined].reshape(-1, 1))
    out["roc_auc_micro"] = float(micro["roc_auc"][0])
    out["pr_auc_micro"] = float(micro["pr_auc"][0])
    return out


def accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Single-label accuracy: y_true (N,) class ids, scores (N, C)."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    if y_true.ndim != 1 or scores.ndim != 2 or len(y_true) != len(scores):
        raise ValueError(f"accuracy expects y_true (N,) and scores (N, C); got {y_true.shape}, {scores.shape}")
    return float((scores.argmax(1) == y_true).mean())


# ---------------------------------------------------------------------------------------------
# Paired bootstrap


def resample_indices(n: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(R, n) track indices drawn with replacement, n of n; the same for every method (paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """(R, n) indices -> (R, n) how often each track was drawn."""
    r = idx.shape[0]
    return np.bincount((idx + n * np.arange(r)[:, None]).ravel(), minlength=r * n).reshape(r, n).astype(np.float64)


@dataclass
class BootstrapResult:
    """Paired bootstrap of several methods on one test set.

    ``resamples[metric][method]`` (R,) macro metric per resample; ``point[metric][method]`` the
    full-set value; ``n_undefined`` (R,) tags left out per resample (labels only, so shared by
    every method); ``n_undefined_point`` the count on the full set.
    """

    methods: list[str]
    metrics: tuple[str, ...]
    point: dict[str, dict[str, float]]
    resamples: dict[str, dict[str, np.ndarray]]
    n_undefined: np.ndarray
    n_undefined_point: int
    n_resamples: int
    seed: int
    extra: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per (method, metric): point, bootstrap mean, 2.5/97.5 % percentile interval."""
        rows = []
        for metric in self.metrics:
            for m in self.methods:
                v = self.resamples[metric][m]
                low, high = percentile_interval(v)
                rows.append(dict(method=m, metric=metric, point=self.point[metric][m], mean=float(np.nanmean(v)),
                                 ci_low=low, ci_high=high,
                                 n_undefined_tags=self.n_undefined_point,
                                 mean_undefined_per_resample=float(self.n_undefined.mean())))
        return pd.DataFrame(rows)

    def pairs(self) -> pd.DataFrame:
        """Every ordered pair (a, b): a - b on the full set and per resample, its 95 % interval and
        the share of resamples where a beats b (ties count one half)."""
        rows = []
        for metric in self.metrics:
            for a, b in permutations(self.methods, 2):
                d = self.resamples[metric][a] - self.resamples[metric][b]
                low, high = percentile_interval(d)
                rows.append(dict(metric=metric, method_a=a, method_b=b,
                                 diff_point=self.point[metric][a] - self.point[metric][b],
                                 diff_mean=float(np.nanmean(d)), ci_low=low, ci_high=high,
                                 p_a_better=float(np.mean((d > 0) + 0.5 * (d == 0)))))
        return pd.DataFrame(rows)


def _bootstrap_tagging(y: np.ndarray, s: np.ndarray, counts: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
    """Macro ROC-AUC / AP per resample of one method; counts (R, N). Returns (R,) arrays."""
    order, start, end = _tie_structure(s)
    pos = np.take_along_axis(y, order, axis=0).astype(np.float32)
    counts = counts.astype(np.float32)
    out = {k: np.empty(len(counts)) for k in ("roc_auc", "pr_auc", "n_undefined")}
    for lo in range(0, len(counts), chunk):
        w = np.take(counts[lo:lo + chunk], order, axis=1)  # (r, N, K) weights in each tag's score order
        roc, ap, n_pos, n_neg = _weighted_tag_metrics(pos, start, end, w)
        defined = (n_pos > 0) & (n_neg > 0)
        with np.errstate(invalid="ignore"):
            out["roc_auc"][lo:lo + chunk] = np.where(defined, roc, 0).sum(1) / defined.sum(1)
            out["pr_auc"][lo:lo + chunk] = np.where(defined, ap, 0).sum(1) / defined.sum(1)
        out["n_undefined"][lo:lo + chunk] = (~defined).sum(1)
    return out


def bootstrap(y_true: np.ndarray, scores: dict[str, np.ndarray], n_resamples: int = 1000, seed: int = 0,
              chunk_elements: int = 2_000_000) -> BootstrapResult:
    """Paired bootstrap of macro metrics for several methods on the same test tracks.

    y_true: (N, K) multi-label 0/1, or (N,) class ids for a single-label task (metric: accuracy).
    scores: {method: (N, K) or (N, C)}. Every method is scored on the same ``n_resamples``
    resamples (``resample_indices(N, n_resamples, seed)``). Per resample, tags undefined in that
    resample are dropped from the macro mean and counted (``n_undefined``). Resamples are processed
    in chunks of about ``chunk_elements`` weights to bound memory.
    """
    if not scores:
        raise ValueError("bootstrap needs at least one method's scores")
    y_true = np.asarray(y_true)
    n = len(y_true)
    if n == 0:
        raise ValueError("bootstrap on an empty test set")
    for m, s in scores.items():
        if len(s) != n:
            raise ValueError(f"scores of {m!r} have {len(s)} rows, labels {n}")
    counts = _counts(resample_indices(n, n_resamples, seed), n)
    methods = list(scores)
    if y_true.ndim == 1:  # single-label: accuracy
        point = {"accuracy": {m: accuracy(y_true, scores[m]) for m in methods}}
        res = {"accuracy": {m: counts @ (np.asarray(scores[m]).argmax(1) == y_true).astype(float) / n
                            for m in methods}}
        return BootstrapResult(methods, SINGLE_LABEL_METRICS, point, res, np.zeros(n_resamples), 0,
                               n_resamples, seed)
    y, _ = _check(y_true, next(iter(scores.values())))
    chunk = max(1, chunk_elements // y.size)
    point: dict[str, dict[str, float]] = {k: {} for k in METRICS}
    res: dict[str, dict[str, np.ndarray]] = {k: {} for k in METRICS}
    n_undef = None
    for m in methods:
        full = tagging_metrics(y, scores[m])
        for k in METRICS:
            point[k][m] = full[k]
        r = _bootstrap_tagging(y, _check(y, scores[m])[1], counts, chunk)
        for k in METRICS:
            res[k][m] = r[k]
        n_undef = r["n_undefined"]
    return BootstrapResult(methods, METRICS, point, res, n_undef, full["n_undefined_tags"], n_resamples, seed)


def two_level_resamples(values: np.ndarray, seed: int | list[int] = 0) -> np.ndarray:
    """Bootstrap values of a mean over G runs that cover the runs' spread and test sampling together.

    values (G, R): the metric of run g (a pretraining seed, or a limited-data draw) on test
    resample r, the same R track resamples for every run (`bootstrap`). For each resample r, G
    runs are drawn with replacement and their values on r averaged: the two-level bootstrap
    (tracks, then runs), (R,). Its interval is that of the mean over runs, so it narrows as runs
    are added (the runs' share of the spread falls as 1/G in variance); with G = 1 it is that run's
    resamples. Several methods resampled with one ``seed`` and the same G draw the same runs at
    each r: paired, as their limited-data draws are the same subsets."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    runs, n = values.shape
    if runs == 1:
        return values[0].copy()
    pick = np.random.default_rng(seed).integers(0, runs, size=(n, runs))  # (R, G) runs drawn per resample
    return values[pick, np.arange(n)[:, None]].mean(axis=1)


def knn_probe_auc(train: Tensor, y_train: np.ndarray, valid: Tensor, y_valid: np.ndarray, k: int = 10) -> float:
    """Macro ROC-AUC of a k-NN probe: each valid row scores every tag by the share of its k
    nearest train rows (cosine) that carry it. train (N, D), y_train (N, K) 0/1, valid (M, D),
    y_valid (M, K). Tags without both classes in ``y_valid`` are skipped; NaN if none is left.
    No fitting and no hyper-parameter but k, so it can run every few hundred steps of a
    pretraining (the online probe of `workbench.diagnostics.compute_diagnostics`); the
    frozen-encoder MLP probe of `workbench.evaluate` remains the reported measure."""
    a = torch.nn.functional.normalize(train.detach().double().cpu(), dim=1)
    b = torch.nn.functional.normalize(valid.detach().double().cpu(), dim=1)
    nearest = (b @ a.T).topk(min(k, len(a)), dim=1).indices.numpy()  # (M, k)
    scores = np.asarray(y_train, np.float64)[nearest].mean(axis=1)  # (M, K)
    y_valid = np.asarray(y_valid)
    tags = [j for j in range(y_valid.shape[1]) if 0 < y_valid[:, j].sum() < len(y_valid)]
    if not tags:
        return float("nan")
    return float(np.mean([roc_auc_score(y_valid[:, j], scores[:, j]) for j in tags]))
