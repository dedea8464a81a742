"""Paired bootstrap: vectorised `workbench.metrics.bootstrap` vs a plain loop over scikit-learn.

``python -m workbench.bench bootstrap [--tracks 5000] [--tags 50] [--resamples 1000]
[--methods 1] [--loop-resamples 50]``

Both sides compute macro ROC-AUC and macro AP on the same resample indices. The scikit-learn
loop is timed on the first ``--loop-resamples`` resamples and extrapolated linearly to all of
them (each resample costs the same); its numbers are compared with the vectorised ones on
those resamples (max abs difference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from workbench.metrics import bootstrap, resample_indices


def _sklearn_loop(y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:

    roc, ap = [], []
    for i in idx:
        yy, ss = y[i], s[i]
        keep = [k for k in range(y.shape[1]) if 0 < yy[:, k].sum() < len(i)]
        roc.append(np.mean([roc_auc_score(yy[:, k], ss[:, k]) for k in keep]))
        ap.append(np.mean([average_precision_score(yy[:, k], ss[:, k]) for k in keep]))
    return np.array(roc), np.array(ap)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m workbench.bench bootstrap", description=__doc__)
    p.add_argument("--tracks", type=int, default=5000)
    p.add_argument("--tags", type=int, default=50)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--methods", type=int, default=1)
    p.add_argument("--loop-resamples", type=int, default=50, help="resamples the sklearn loop really runs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv or [])


    rng = np.random.default_rng(args.seed)
    # MTAT-like: sparse tags, informative but noisy scores rounded to 3 decimals (ties occur)
    prevalence = rng.uniform(0.01, 0.2, args.tags)
    y = (rng.random((args.tracks, args.tags)) < prevalence).astype(np.uint8)
    scores = {f"m{j}": np.round(rng.normal(size=y.shape) + (1.0 + 0.2 * j) * y, 3) for j in range(args.methods)}

    t0 = time.perf_counter()
    res = bootstrap(y, scores, n_resamples=args.resamples, seed=args.seed)
    t_vec = time.perf_counter() - t0

    idx = resample_indices(args.tracks, args.resamples, args.seed)[: args.loop_resamples]
    t0 = time.perf_counter()
    diffs = []
    for m, s in scores.items():
        roc, ap = _sklearn_loop(y, s, idx)
        diffs.append(np.abs(roc - res.resamples["roc_auc"][m][: len(idx)]).max())
        diffs.append(np.abs(ap - res.resamples["pr_auc"][m][: len(idx)]).max())
    t_loop_part = time.perf_counter() - t0
    t_loop = t_loop_part * args.resamples / len(idx)

    print(f"bootstrap: {args.resamples} resamples x {args.tracks} tracks x {args.tags} tags x "
          f"{args.methods} method(s), macro ROC-AUC + macro AP")
    print(f"  vectorised (workbench.metrics.bootstrap): {t_vec:8.2f} s")
    print(f"  sklearn loop: {t_loop_part:8.2f} s for {len(idx)} resamples -> {t_loop:8.2f} s extrapolated "
          f"to {args.resamples}")
    print(f"  speed-up: {t_loop / t_vec:6.1f}x  (goal >= 10x)")
    print(f"  max abs difference vs sklearn on the {len(idx)} looped resamples: {max(diffs):.2e}")


if __name__ == "__main__":
    main()
