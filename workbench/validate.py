"""Model selection without the test split: valid-split figures of runs and floors.

``python -m workbench validate --runs RUN...`` prints, per run and per floor, the MLP probe's
cross-validated valid macro ROC-AUC and a k-NN probe's, on the dataset and (for the embedded
corpus) on the transfer set. Test embeddings are never computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.baselines import baseline_source
from workbench.config import RunConfig
from workbench.data.datasets import open_dataset
from workbench.embeddings import extract_embeddings, resolve_source
from workbench.evaluate import source_labels, transfer_config
from workbench.metrics import knn_probe_auc
from workbench.probe import targets, task_of, train_probe, validation_score
from workbench.runs import device as run_device


def validation_table(cfg: RunConfig, runs: list[Path], progress: bool = True) -> pd.DataFrame:
    """Model selection without the test split (``python -m workbench validate``): one row per run
    in ``runs`` and per baseline of ``eval.baselines`` but the supervised one, with the macro
    ROC-AUC on the VALID split of the MLP probe trained on the full train split, cross-validated
    so that no figure is the maximum over the split that also stopped the training
    (`cross_validated_probe`: ``valid_mlp``), and of the k-NN probe (k = 10, cosine) of the track
    embeddings (``valid_knn``); for the embedded corpus the same two on the transfer set's valid
    split (``transfer_valid_mlp``, ``transfer_valid_knn``; its second random floor,
    ``random-target``, only there). Test embeddings are never computed, so a setting chosen on
    this table has not seen the test tracks. A single-label dataset reports the probe's accuracy
    and no k-NN figure (NaN)."""
    sets = [("", cfg)] + ([("transfer_", transfer_config(cfg))] if cfg.data.dataset == "synth" else [])
    sources = [resolve_source(r, cfg) for r in runs]
    names = [Path(r).name if isinstance(r, (str, Path)) else src.checkpoint for r, src in zip(runs, sources)]
    rows: dict[str, dict[str, object]] = {}
    for prefix, c in sets:
        store = open_dataset(c)
        task = task_of(store)
        here = sources + [baseline_source(b, c, store) for b in c.eval.baselines if b != "supervised"]
        for label, src, name in zip(source_labels(here, cfg.train.seed), here, names + [""] * len(here)):
            emb = {s: extract_embeddings(src, store, s, c, progress=progress) for s in ("train", "valid")}
            y = {s: targets(store.labels[emb[s].indices], task) for s in emb}
            row = rows.setdefault(label, {"encoder": label, "run": name})
            row[prefix + "valid_mlp"] = cross_validated_probe(emb["train"].track, y["train"], emb["valid"].track,
                                                              y["valid"], c, task, store.labels.shape[1])
            row[prefix + "valid_knn"] = (knn_probe_auc(torch.from_numpy(emb["train"].track), y["train"],
                                                       torch.from_numpy(emb["valid"].track), y["valid"])
                                         if task == "multi_label" else math.nan)
    return pd.DataFrame(list(rows.values()))


def cross_validated_probe(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
                          cfg: RunConfig, task: str, n_outputs: int) -> float:
    """The MLP probe's valid figure read at an epoch chosen on other data: the valid tracks are
    split in two seeded halves; a probe early-stopped on one half is scored on the other, and the
    two scores are averaged (macro ROC-AUC, or accuracy for a single-label task)."""
    order = np.random.default_rng([cfg.probe.seed, 17]).permutation(len(x_valid))
    halves = np.sort(order[::2]), np.sort(order[1::2])
    scores = []
    for stop, read in (halves, halves[::-1]):
        probe = train_probe(x_train, y_train, x_valid[stop], y_valid[stop], cfg.probe, task=task,
                            n_outputs=n_outputs, device=run_device(cfg))
        scores.append(validation_score(task, y_valid[read], probe.predict(x_valid[read])))
    return float(np.mean(scores))
