"""Model selection without the test split: valid-split figures of runs and floors.

``python -m workbench validate --runs RUN...`` prints, per run and per floor, the MLP probe's
best valid macro ROC-AUC and a k-NN probe's, on the dataset and (for the embedded corpus) on the
transfer set. Test embeddings are never computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from workbench.baselines import baseline_source
from workbench.config import RunConfig
from workbench.data.datasets import open_dataset
from workbench.embeddings import extract_embeddings, resolve_source
from workbench.evaluate import source_labels, transfer_config
from workbench.metrics import knn_probe_auc
from workbench.probe import targets, task_of, train_probe
from workbench.runs import device as run_device


def validation_table(cfg: RunConfig, runs: list[Path], progress: bool = True) -> pd.DataFrame:
    """Model selection without the test split (``python -m workbench validate``): one row per run
    in ``runs`` and per baseline of ``eval.baselines`` but the supervised one, with the macro
    ROC-AUC on the VALID split of the MLP probe trained on the full train split (its best epoch,
    the probe's own early-stopping score: ``valid_mlp``) and of the k-NN probe (k = 10, cosine) of
    the track embeddings (``valid_knn``); for the embedded corpus the same two on the transfer
    set's valid split (``transfer_valid_mlp``, ``transfer_valid_knn``). Test embeddings are never
    computed, so a setting chosen on this table has not seen the test tracks. A single-label
    dataset reports the probe's accuracy and no k-NN figure (NaN)."""
    sets = [("", cfg)] + ([("transfer_", transfer_config(cfg))] if cfg.data.dataset == "synth" else [])
    sources = [resolve_source(r, cfg) for r in runs]
    names = [Path(r).name if isinstance(r, (str, Path)) else src.checkpoint for r, src in zip(runs, sources)]
    columns: dict[str, list[float]] = {}
    for prefix, c in sets:
        store = open_dataset(c)
        task = task_of(store)
        here = sources + [baseline_source(b, c, store) for b in c.eval.baselines if b != "supervised"]
        for src in here:
            emb = {s: extract_embeddings(src, store, s, c, progress=progress) for s in ("train", "valid")}
            y = {s: targets(store.labels[emb[s].indices], task) for s in emb}
            probe = train_probe(emb["train"].track, y["train"], emb["valid"].track, y["valid"], c.probe,
                                task=task, n_outputs=store.labels.shape[1], device=run_device(c))
            columns.setdefault(prefix + "valid_mlp", []).append(probe.best_valid)
            columns.setdefault(prefix + "valid_knn", []).append(
                knn_probe_auc(torch.from_numpy(emb["train"].track), y["train"],
                              torch.from_numpy(emb["valid"].track), y["valid"]) if task == "multi_label" else math.nan)
        labels = source_labels(here, cfg.train.seed)
    return pd.DataFrame({"encoder": labels, "run": names + [""] * (len(labels) - len(names)), **columns})
