"""Probes on frozen embeddings: MLP (default), linear, and the paper-code head.

- ``mlp`` (MARBLE's protocol, DATASETS.md): features standardised with the train statistics,
  Linear(E, 512), ReLU, Dropout, Linear(512, K); Adam lr 1e-3; early stopping on the validation
  macro ROC-AUC (accuracy for single-label tasks).
- ``linear``: standardised features, Linear(E, K); same training.
- ``paper-code`` (deezer/multi-view-ssl-benchmark): head [Linear(E, 512, bias=False),
  BatchNorm, ReLU], Linear(512, K), trained on embeddings of random 4 s segments, each carrying
  its track's labels; validated and tested on mean-pooled chunk embeddings (`workbench.evaluate`
  builds the segment set). No standardisation: the head's BatchNorm does it.

Multi-label tasks use BCE and ROC-AUC; single-label tasks (GTZAN-like, labels as class ids)
use cross-entropy and accuracy. Training is reproducible from ``ProbeConfig.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from workbench.config import LABEL_TASKS, ProbeConfig
from workbench.metrics import accuracy, tagging_metrics


def check_split(y: np.ndarray, name: str, task: str = "multi_label") -> None:
    """Raise a ValueError naming the split when it cannot train or score a probe."""
    if task not in LABEL_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {LABEL_TASKS}")
    if len(y) == 0:
        raise ValueError(f"the {name} split is empty: no tracks to train or score a probe on")
    if task == "single_label":
        if len(np.unique(y)) < 2:
            raise ValueError(f"the {name} split holds a single class ({np.unique(y).tolist()}); "
                             "accuracy needs at least two classes")
        return
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"multi-label targets of the {name} split must be (N, K); got {y.shape}")
    pos = y.sum(0)
    if not ((pos > 0) & (pos < len(y))).any():
        raise ValueError(f"the {name} split is single-class for every tag ({len(y)} tracks, {y.shape[1]} tags): "
                         "no tag has both a positive and a negative track")


def _head(protocol: str, in_dim: int, out_dim: int, cfg: ProbeConfig) -> nn.Module:
    heads = {
        "mlp": lambda: nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                     nn.Linear(cfg.hidden, out_dim)),
        "linear": lambda: nn.Linear(in_dim, out_dim),
        "paper-code": lambda: nn.Sequential(nn.Linear(in_dim, cfg.hidden, bias=False), nn.BatchNorm1d(cfg.hidden),
                                            nn.ReLU(), nn.Linear(cfg.hidden, out_dim)),
    }
    if protocol not in heads:
        raise ValueError(f"unknown probe protocol {protocol!r}; expected one of {', '.join(heads)}")
    return heads[protocol]()


@dataclass
class Probe:
    """A trained probe: ``predict(x (N, E)) -> scores (N, K)`` (sigmoid or softmax)."""

    head: nn.Module
    mean: np.ndarray
    std: np.ndarray
    task: str
    protocol: str
    best_epoch: int
    best_valid: float
    history: list[dict] = field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise ValueError(f"probe expects features (N, {len(self.mean)}); got {x.shape}")
        self.head.eval()
        with torch.no_grad():
            logits = self.head(torch.from_numpy((x - self.mean) / self.std))
            out = torch.sigmoid(logits) if self.task == "multi_label" else torch.softmax(logits, -1)
        return out.numpy().astype(np.float64)


def task_of(store) -> str:
    """"single_label" or "multi_label": the task a store's metadata declares (multi-label by default)."""
    return "single_label" if store.meta.get("task") in ("single_label", "single-label") else "multi_label"


def targets(y: np.ndarray, task: str) -> np.ndarray:
    """Probe targets of (N, K) labels: class ids (N,) for a single-label task, else the matrix."""
    return y.argmax(1) if task == "single_label" else y


def validation_score(task: str, y: np.ndarray, scores: np.ndarray) -> float:
    """The early-stopping score: macro ROC-AUC (multi-label) or accuracy (single-label)."""
    return tagging_metrics(y, scores)["roc_auc"] if task == "multi_label" else accuracy(y, scores)


def train_probe(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
                cfg: ProbeConfig, task: str = "multi_label", protocol: str | None = None,
                n_outputs: int | None = None, device: str | torch.device = "cpu") -> Probe:
    """Train a probe on frozen features.

    x_train (N, E) with y_train (N, K) 0/1 (multi-label) or (N,) class ids (single-label);
    x_valid, y_valid likewise, used for early stopping (best validation epoch kept, patience
    ``cfg.patience``). ``protocol`` defaults to ``cfg.protocol``. Empty or single-class splits
    raise a ValueError naming the split. ``device``: where to train (the probe is returned on CPU).
    On CPU a small problem trains single-threaded: at these sizes thread hand-offs cost more than
    the arithmetic (100x slower on a busy 2-core machine).
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and np.asarray(x_train).size < 5_000_000:
        torch.set_num_threads(1)
    try:
        probe = _train(x_train, y_train, x_valid, y_valid, cfg, task, protocol, n_outputs, device)
    finally:
        torch.set_num_threads(threads)
    return probe


def _train(x_train, y_train, x_valid, y_valid, cfg: ProbeConfig, task: str, protocol: str | None,
           n_outputs: int | None, device: torch.device) -> Probe:
    protocol = protocol or cfg.protocol
    check_split(y_train, "train", task)
    check_split(y_valid, "valid", task)
    x_train = np.asarray(x_train, dtype=np.float32)
    x_valid = np.asarray(x_valid, dtype=np.float32)
    if x_train.ndim != 2 or x_valid.ndim != 2 or x_train.shape[1] != x_valid.shape[1]:
        raise ValueError(f"features must be (N, E) with the same E; got {x_train.shape} and {x_valid.shape}")
    if len(x_train) != len(y_train) or len(x_valid) != len(y_valid):
        raise ValueError(f"features and labels differ in length: {len(x_train)}/{len(y_train)}, "
                         f"{len(x_valid)}/{len(y_valid)}")
    if protocol == "paper-code":  # the head's BatchNorm standardises
        mean = np.zeros(x_train.shape[1], np.float32)
        std = np.ones(x_train.shape[1], np.float32)
    else:
        mean = x_train.mean(0)
        std = x_train.std(0) + 1e-6
    if task == "multi_label":
        n_out = y_train.shape[1]
        target = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
        loss_fn: nn.Module = nn.BCEWithLogitsLoss()
    else:
        n_out = n_outputs or int(max(np.max(y_train), np.max(y_valid))) + 1
        target = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        loss_fn = nn.CrossEntropyLoss()
    xt = torch.from_numpy((x_train - mean) / std).to(device)
    target = target.to(device)
    xv = torch.from_numpy((x_valid - mean) / std).to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        head = _head(protocol, x_train.shape[1], n_out, cfg).to(device)
        opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        probe = Probe(head, mean, std, task, protocol, best_epoch=-1, best_valid=-np.inf)
        best_state, bad = None, 0
        # BatchNorm cannot train on a batch of one: drop a last batch of size 1
        batch = max(2, min(cfg.batch_size, len(xt)))
        for epoch in range(cfg.max_epochs):
            head.train()
            perm = torch.randperm(len(xt), device=device)
            total = 0.0
            for lo in range(0, len(xt), batch):
                idx = perm[lo:lo + batch]
                if len(idx) < 2 and len(xt) >= 2:
                    continue
                loss = loss_fn(head(xt[idx]), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            head.eval()
            with torch.no_grad():
                logits = head(xv)
                valid_scores = (torch.sigmoid(logits) if task == "multi_label" else torch.softmax(logits, -1))
            score = validation_score(task, y_valid, valid_scores.cpu().numpy().astype(np.float64))
            probe.history.append({"epoch": epoch, "loss": total / len(xt), "valid": score})
            if score > probe.best_valid:
                probe.best_valid, probe.best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        head.cpu().load_state_dict(best_state)
    head.eval()
    return probe
