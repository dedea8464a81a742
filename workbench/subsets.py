"""Limited-data subsets of the train split: nested, seeded draws, and their file.

Subsets of the train split are nested within a draw (draw d of 5 % contains draw d of 1 %): each
draw is one seeded ordering of the train tracks and the fraction f takes its first max(ceil(f N),
2) tracks. ``eval.subset_rule``: "uniform" (the paper: tracks drawn uniformly at random) or
"coverage" (one random positive track of every tag first, tags in random order, then the rest at
random; this over-represents rare-tag tracks at small fractions). Validation and test stay whole.
The point of a fraction with several draws is the mean over draws; its interval comes from the
two-level bootstrap of that mean (`metrics.two_level_resamples`: test tracks resampled, then
draws), so it covers draw-to-draw variance and narrows as draws are added (``draw_std`` in
results.csv reports the draws' spread alone).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from workbench.files import save_text

SUBSET_RULES = ("uniform", "coverage")


def limited_data_subsets(labels: np.ndarray, fractions: tuple[float, ...], draws: int,
                         seed: int = 0, rule: str = "uniform") -> dict[float, list[np.ndarray]]:
    """Nested, seeded subsets of the train split, as positions into it.

    labels (N, K) multi-label (or (N,) class ids). Returns {fraction: [positions of draw d]};
    fraction 1.0 has one draw (everything). See the module docstring for the two rules.
    """
    if rule not in SUBSET_RULES:
        raise ValueError(f"eval.subset_rule is {rule!r}; expected one of {', '.join(SUBSET_RULES)}")
    labels = np.asarray(labels)
    onehot = labels if labels.ndim == 2 else np.eye(int(labels.max()) + 1, dtype=np.uint8)[labels]
    n = len(onehot)
    orders = []
    for d in range(draws):
        rng = np.random.default_rng([seed, d])
        if rule == "uniform":
            orders.append(rng.permutation(n))
            continue
        first: list[int] = []
        taken = np.zeros(n, bool)
        for k in rng.permutation(onehot.shape[1]):
            cand = np.flatnonzero((onehot[:, k] > 0) & ~taken)
            if cand.size and not onehot[taken, k].any():
                j = int(rng.choice(cand))
                first.append(j)
                taken[j] = True
        orders.append(np.concatenate([np.array(first, np.int64), rng.permutation(np.flatnonzero(~taken))]))
    out: dict[float, list[np.ndarray]] = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"limited-data fraction {f} is not in (0, 1]")
        size = min(n, max(math.ceil(f * n - 1e-9), 2))
        out[float(f)] = [np.arange(n)] if f == 1.0 else [np.sort(o[:size]) for o in orders]
    return out


def save_subsets(path: Path, subsets: dict[float, list[np.ndarray]], train_indices: np.ndarray, **meta) -> Path:
    """Write subsets as JSON: store indices per fraction and draw, with the seed and rule."""
    blob = {"nested": True, "rule": "one seeded ordering per draw; fraction f = first max(ceil(fN), 2)",
            **meta, "subsets": {str(f): [train_indices[p].tolist() for p in ps] for f, ps in subsets.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_text(path, json.dumps(blob))
    return path


def load_subsets(path: Path) -> dict[float, list[np.ndarray]]:
    """Store indices {fraction: [draw arrays]} as written by `save_subsets`."""
    blob = json.loads(Path(path).read_text())
    return {float(f): [np.asarray(d, np.int64) for d in ds] for f, ds in blob["subsets"].items()}
