"""Collapse diagnostics: cheap embedding statistics, DINO statistics, and a collapse monitor.

Every function takes tensors and returns plain Python floats (or one numpy array for the
spectrum), cheap enough to run every few hundred steps on a fixed held-out batch. The trainer
(`workbench.train.pretrain`) calls `compute_diagnostics(method, views)` every
``cfg.diagnostics.every`` steps and hands the stats to `CollapseMonitor.check`.

Statistics and their healthy / collapsed values (D embedding size, K prototypes):

- ``std``: mean over dimensions of the per-dimension std of L2-normalised embeddings.
  Healthy spread on the sphere: about 1/sqrt(D); complete collapse: 0 (the SimSiam paper's
  figure, Chen & He 2021, arXiv 2011.10566, Fig. 2). ``std_ratio`` = std * sqrt(D).
- ``rank``: RankMe (Garrido et al. 2023, arXiv 2210.02885), exp of the entropy of the
  normalised singular values of the (uncentred) embedding matrix; 1 when every row is the
  same vector, about min(N, D) for an isotropic cloud.
- ``alignment`` / ``uniformity``: Wang & Isola 2020 (arXiv 2005.10242), alpha 2, t 2, on
  L2-normalised embeddings; alignment needs paired views (0 for identical views), uniformity
  is log E exp(-2 ||u - v||^2) over different rows (0 when collapsed, about -4 on a
  well-spread high-dimensional sphere).
- ``cos_between``: mean cosine similarity between different tracks (1 when collapsed).
- DINO (Caron et al. 2021): per-sample and batch-mean entropy of the teacher and student
  distributions, the cross-entropy (the loss) against its uniform-collapse value ln(K), KL
  (teacher || student), the center norm, the number of prototypes that are someone's argmax.

Prefixes: ``embed_`` the backbone embedding (`method.embed`), ``proj_`` the projector output
(`method.project`); schedule values (EMA momentum, temperatures) come from
``method.schedule_state()`` with the prefix ``sched_``.

The notebooks' helpers (collapse pairs, run spectra, training-curve panels, maps, neighbours)
are in `workbench.diagnostic_plots`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.config import HELD_OUT_SEED_OFFSET, PROBE_TRACKS_SEED_OFFSET, DiagnosticsConfig
from workbench.data.datasets import pretrain_indices
from workbench.data.views import ViewSampler, gather_segments
from workbench.metrics import knn_probe_auc

log = logging.getLogger(__name__)

__all__ = [
    "embedding_std", "singular_values", "effective_rank", "alignment", "uniformity", "mean_cosine_between",
    "entropy", "dino_stats", "embedding_stats", "compute_diagnostics", "CollapseMonitor",
    "read_warnings",
]


def _check_2d(z: Tensor, name: str) -> Tensor:
    if z.dim() != 2 or z.shape[0] < 1:
        raise ValueError(f"{name} expects embeddings (N, D), got {tuple(z.shape)}")
    return z.detach().float()


# ----------------------------------------------------------------------------------- embeddings
def embedding_std(z: Tensor) -> float:
    """z: (N, D). Mean over dimensions of the std (over N) of the L2-normalised rows.

    About 1/sqrt(D) for embeddings spread evenly over the sphere, 0 for collapsed ones
    (SimSiam, Chen & He 2021, Sec. 4.1). Population std (N in the denominator) so a single row
    gives 0 rather than NaN.
    """
    z = _check_2d(z, "embedding_std")
    u = F.normalize(z, dim=1)
    return float(u.std(dim=0, unbiased=False).mean())


def singular_values(z: Tensor, center: bool = False) -> np.ndarray:
    """z: (N, D). Singular values of the embedding matrix, descending, float64 array (min(N, D),),
    or (min(N - 1, D),) with ``center=True``.

    ``center=True`` removes the mean row first (the spectrum of the covariance, dimensional
    collapse as in Jing et al. 2022, arXiv 2110.09348); RankMe uses the raw matrix. N centred
    rows span at most N - 1 dimensions, so when N <= D the last singular value is 0 for any
    embedding, healthy or not: it is dropped rather than drawn as a cliff.
    """
    z = _check_2d(z, "singular_values").double()
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(z).cpu().numpy()
    return s[: min(len(z) - 1, z.shape[1])] if center else s


def effective_rank(z: Tensor, eps: float = 1e-7, center: bool = False) -> float:
    """z: (N, D). RankMe (Garrido et al. 2023, Eq. 1): exp(-sum p_k log p_k), p = s / ||s||_1 + eps.

    1 for N copies of one vector, close to min(N, D) for an isotropic Gaussian with N >> D.
    An all-zero matrix returns 0 (no direction at all).
    """
    s = singular_values(z, center=center)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def lidar(views: list[Tensor], delta: float = 1e-4, eps: float = 1e-7) -> float:
    """LiDAR (Thilak et al. 2024, "LiDAR: Sensing Linear Probing Performance in Joint Embedding SSL
    Architectures", https://arxiv.org/abs/2312.04000): the effective rank of the linear
    discriminant of the embedding, each sample a class and its V views the class's members.

    views: V >= 2 tensors (N, D), row i of each from sample i. With mu_i the mean of sample i's
    views and mu their mean: S_b = sum_i (mu_i - mu)(mu_i - mu)^T / (N - 1) (between samples),
    S_w = sum_i,v (z_iv - mu_i)(z_iv - mu_i)^T / (N (V - 1)) + delta I (within a sample, across
    its views); L = S_w^{-1/2} S_b S_w^{-1/2}; with lambda its eigenvalues and
    p = lambda / ||lambda||_1 + eps, LiDAR = exp(-sum p log p). Where RankMe counts the
    directions the embedding uses, LiDAR counts those that separate samples more than views of
    one sample differ: k for samples spread in k directions with small view noise.
    """
    if len(views) < 2 or any(v.dim() != 2 or v.shape != views[0].shape for v in views):
        raise ValueError(f"lidar expects V >= 2 view embeddings (N, D) of one shape, "
                         f"got {[tuple(v.shape) for v in views]}")
    z = torch.stack([v.detach().double().cpu() for v in views], dim=1)  # (N, V, D)
    n, v, d = z.shape
    mu_i = z.mean(dim=1)  # (N, D)
    between = (mu_i - mu_i.mean(dim=0)).T @ (mu_i - mu_i.mean(dim=0)) / max(n - 1, 1)
    diff = (z - mu_i[:, None]).reshape(-1, d)
    within = diff.T @ diff / (n * (v - 1)) + delta * torch.eye(d, dtype=z.dtype)
    w_val, w_vec = torch.linalg.eigh(within)
    w_inv_sqrt = w_vec @ torch.diag(w_val.clamp(min=1e-12).rsqrt()) @ w_vec.T
    lam = torch.linalg.eigvalsh(w_inv_sqrt @ between @ w_inv_sqrt).clamp(min=0.0)
    if lam.sum() <= 0:
        return 0.0
    p = lam / lam.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> float:
    """z1, z2: (N, D) embeddings of paired views (row i of both from one track).

    Wang & Isola 2020, Eq. 4: E ||f(x) - f(y)||^alpha on L2-normalised embeddings; 0 for
    identical views, 4 (alpha 2) for antipodal ones.
    """
    z1, z2 = _check_2d(z1, "alignment"), _check_2d(z2, "alignment")
    if z1.shape != z2.shape:
        raise ValueError(f"alignment expects paired views of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    return float((F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).pow(alpha).mean())


def uniformity(z: Tensor, t: float = 2.0) -> float:
    """z: (N, D), N >= 2. Wang & Isola 2020, Eq. 5: log E_{i != j} exp(-t ||u_i - u_j||^2).

    0 when every row is the same direction; more negative is more uniform (the floor for
    t = 2 on a high-dimensional sphere is about -4).
    """
    z = _check_2d(z, "uniformity")
    if z.shape[0] < 2:
        raise ValueError(f"uniformity needs at least 2 rows, got {tuple(z.shape)}")
    return float(torch.pdist(F.normalize(z, dim=1), p=2).pow(2).mul(-t).exp().mean().log())


def mean_cosine_between(z: Tensor, groups: Tensor | np.ndarray | None = None) -> float:
    """z: (N, D); groups: (N,) track ids or None. Mean cosine similarity over pairs of rows from
    different tracks (all pairs i != j when ``groups`` is None). 1 when collapsed."""
    z = _check_2d(z, "mean_cosine_between")
    u = F.normalize(z, dim=1)
    sim = u @ u.T
    n = z.shape[0]
    mask = ~torch.eye(n, dtype=torch.bool, device=z.device)
    if groups is not None:
        g = torch.as_tensor(np.asarray(groups), device=z.device).reshape(-1)
        if g.shape[0] != n:
            raise ValueError(f"mean_cosine_between: groups has {g.shape[0]} entries for {n} rows")
        mask &= g[:, None] != g[None, :]
    if not mask.any():
        return float("nan")
    return float(sim[mask].mean())


def embedding_stats(z: Tensor, prefix: str, z_other: Tensor | None = None,
                      groups: Tensor | np.ndarray | None = None) -> dict[str, float]:
    """All embedding stats of one (N, D) matrix under ``prefix``; ``z_other`` (N, D) is the
    paired view for alignment. Keys: std, std_ref (1/sqrt(D)), std_ratio, rank, rank_centered,
    dim, n (N: RankMe cannot exceed min(N, D)), alignment, uniformity, cos_between."""
    z = _check_2d(z, "embedding_stats")
    D = z.shape[1]
    out = {"std": embedding_std(z), "std_ref": 1.0 / math.sqrt(D), "dim": float(D), "n": float(z.shape[0]),
           "rank": effective_rank(z), "rank_centered": effective_rank(z, center=True),
           "cos_between": mean_cosine_between(z, groups)}
    out["std_ratio"] = out["std"] * math.sqrt(D)
    if z.shape[0] >= 2:
        out["uniformity"] = uniformity(z)
    if z_other is not None:
        out["alignment"] = alignment(z, z_other)
    return {f"{prefix}_{k}": v for k, v in out.items()}


# ----------------------------------------------------------------------------------- DINO
def entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """probs: (..., K) probabilities. Shannon entropy in nats along ``dim`` (0 log 0 = 0):
    ln(K) for a uniform distribution, 0 for a one-hot one. Returns (...,)."""
    p = probs.float()
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=dim)


def dino_stats(student_logits: Tensor, targets: Tensor, student_temp: float, center: Tensor) -> dict[str, float]:
    """student_logits (B, K) and the teacher's targets (B, K), rows summing to 1, of paired views
    (teacher of one view, student of another): the distribution the student learns from, DINO's
    t = softmax((teacher - center) / teacher_temp) (`losses.dino_targets`, Caron et al. 2021) or
    the Sinkhorn-Knopp assignment (`losses.sinkhorn_knopp`); s = softmax(student / student_temp).
    center: (1, K) in force (zeros when centering is off or replaced by Sinkhorn-Knopp).

    Returns teacher/student per-sample entropy (mean over rows) and batch entropy (of the
    batch-mean distribution), the cross-entropy (the DINO loss), ln(K), KL(t || s) = CE - H(t),
    the center norm and the number of distinct teacher / student argmax prototypes.
    Uniform collapse: H(t) -> ln K and CE -> ln K. One-prototype collapse: batch H(t) -> 0.
    """
    if student_logits.dim() != 2 or student_logits.shape != targets.shape:
        raise ValueError(f"dino_stats expects student logits and teacher targets (B, K) of one shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(targets.shape)}")
    K = student_logits.shape[1]
    if center.shape != (1, K):
        raise ValueError(f"dino_stats expects center (1, {K}), got {tuple(center.shape)}")
    s_log = F.log_softmax(student_logits.detach().float() / student_temp, dim=-1)
    t = targets.detach().float()
    s = s_log.exp()
    ce = float((-(t * s_log).sum(dim=-1)).mean())
    h_t = float(entropy(t).mean())
    return {
        "teacher_entropy": h_t,
        "teacher_batch_entropy": float(entropy(t.mean(dim=0))),
        "student_entropy": float(entropy(s).mean()),
        "student_batch_entropy": float(entropy(s.mean(dim=0))),
        "ce": ce,
        "ln_k": math.log(K),
        "kl": ce - h_t,
        "center_norm": float(center.float().norm()),
        "teacher_prototypes_used": float(t.argmax(dim=-1).unique().numel()),
        "student_prototypes_used": float(s.argmax(dim=-1).unique().numel()),
    }


# ----------------------------------------------------------------------------------- held-out batch
def held_out_batch(cfg: Any, store: Any, batch: int | None = None):
    """A fixed `ViewBatch` of ``batch`` (default ``diagnostics.held_out_batch``) examples of
    validation tracks (pretraining tracks when the store has none), drawn with its own seed so
    the training draws are untouched; the trainer's monitor and notebook 03 share it."""
    valid = store.indices("valid") if "valid" in set(store.tracks["split"]) else np.array([], dtype=np.int64)
    idx = valid if len(valid) else pretrain_indices(store, cfg)
    sampler = ViewSampler.from_config(store, idx, cfg, seed=cfg.train.seed + HELD_OUT_SEED_OFFSET)
    return sampler.sample(batch or cfg.diagnostics.held_out_batch)


def probe_batch(cfg, store) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The online probe's fixed labeled tracks: up to ``diagnostics.probe_tracks`` train tracks
    and half as many valid ones (never test), seeded; their middle 4 s segment. Returns
    (train waveforms (N, S), train labels, valid waveforms, valid labels), or None when the
    store has no labeled train and valid splits (an unlabeled pool) or the probe is off."""
    n = cfg.diagnostics.probe_tracks
    splits = set(store.tracks["split"])
    if n <= 0 or not {"train", "valid"} <= splits or store.labels.shape[1] == 0:
        return None
    rng = np.random.default_rng(cfg.train.seed + PROBE_TRACKS_SEED_OFFSET)
    seg = cfg.audio.segment_samples
    out = []
    for split, size in (("train", n), ("valid", max(2, n // 2))):
        idx, y = store.split_labels(split)
        pick = np.sort(rng.permutation(len(idx))[:size])
        starts = np.maximum(np.asarray(store.lengths)[idx[pick]] - seg, 0) // 2
        out += [gather_segments(store, idx[pick], starts, seg), y[pick]]
    return tuple(out)


# ----------------------------------------------------------------------------------- all stats
def compute_diagnostics(method: torch.nn.Module, views: list[Tensor],
                        track_idx: Tensor | np.ndarray | None = None, batch_norm: str = "batch",
                        probe: tuple[Tensor, np.ndarray, Tensor, np.ndarray] | None = None) -> dict[str, float]:
    """Every stat of ``method`` on a held-out batch: views, a list of V >= 1 mel tensors
    (B, 1, F, T) (row i of each from one track); track_idx (B,) optional, excludes pairs of
    one track from ``cos_between``.

    Runs under no_grad with the method in eval mode and restores the previous train/eval modes
    and every BatchNorm buffer afterwards, so the held-out batch leaves no trace. ``batch_norm``:
    "batch" (default) normalises with the held-out batch's own statistics, as the loss sees
    the network during training; "running" uses the running statistics (eval mode proper).
    Why "batch": early in a run the running statistics lag far behind (momentum 0.1 from
    mean 0 / var 1 while the log-mel input sits around -50 dB), so an eval-mode network maps
    every track to nearly the same vector (cosine 0.9999 at step 4 of a healthy smoke run)
    and every run would look collapsed. Keys are
    ``embed_*`` (backbone), ``proj_*`` (projector), ``dino_*`` (DINO only) and ``sched_*``
    (``schedule_state()``: EMA momentum, temperatures in force), ``*_lidar`` (`lidar`, over the
    views) and, given ``probe`` = (train mel (N, 1, F, T), train labels (N, K), valid mel,
    valid labels) of labeled tracks never in the test split, ``probe_knn_auc``: the online k-NN
    probe of the backbone embedding (`workbench.metrics.knn_probe_auc`), usefulness beside collapse.
    """
    if not views or any(v.dim() != 4 or v.shape[1] != 1 or v.shape != views[0].shape for v in views):
        raise ValueError(f"compute_diagnostics expects a list of mel views (B, 1, F, T) of one shape, got "
                         f"{[tuple(v.shape) for v in views]}")
    if batch_norm not in ("batch", "running"):
        raise ValueError(f"batch_norm must be 'batch' or 'running', got {batch_norm!r}")
    modes = {m: m.training for m in method.modules()}
    norms = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    method.eval()
    if batch_norm == "batch":
        for m in norms:
            m.train()
    try:
        with torch.no_grad():
            stats: dict[str, float] = {}
            mel = torch.cat(views)  # one pass over all views, as the methods' training step
            for prefix, fn in (("embed", method.embed), ("proj", method.project)):
                zs = fn(mel).float().split(views[0].shape[0])
                stats.update(embedding_stats(zs[0], prefix, zs[1] if len(zs) > 1 else None, track_idx))
                if len(zs) > 1:
                    stats[f"{prefix}_lidar"] = lidar(list(zs))
            stats.update(method.stats(views))  # method-specific (DINO's)
            if probe is not None:
                x_train, y_train, x_valid, y_valid = probe
                stats["probe_knn_auc"] = knn_probe_auc(method.embed(x_train).float(), y_train,
                                                         method.embed(x_valid).float(), y_valid)
            stats.update({f"sched_{k}": float(v) for k, v in method.schedule_state().items()})
    finally:
        for m, was_training in modes.items():
            m.train(was_training)
        for m, buffers in zip(norms, saved):
            for k, b in buffers.items():
                getattr(m, k).copy_(b)
    return stats


def dino_view_stats(student_logits: Tensor, targets: Tensor, n_views: int, student_temp: float,
                    center: Tensor) -> dict[str, float]:
    """DINO statistics (``dino_*``) of student logits and teacher targets (V B, K) each,
    view-major, over the view pairs of the loss (teacher of view i, student of view i + 1 mod V),
    with the targets the loss uses (`workbench.methods.DINO.teacher_targets`) and the center in
    force (`workbench.methods.DINO.stats`)."""
    B, V = student_logits.shape[0] // n_views, n_views
    student = torch.cat([student_logits[((i + 1) % V) * B:((i + 1) % V + 1) * B] for i in range(V)])
    return {f"dino_{k}": v for k, v in dino_stats(student, targets, student_temp, center).items()}


# ----------------------------------------------------------------------------------- monitor
class CollapseMonitor:
    """Checks diagnostics stats against documented collapse thresholds (``DiagnosticsConfig``).

    For each of ``embed`` and ``proj`` (D = ``<prefix>_dim``):
    - ``std``: per-dimension std of L2-normalised embeddings below ``std_ratio_min / sqrt(D)``
      (0.15 of the healthy spread, about a mean cosine of 0.98 between tracks; complete
      collapse drives it to 0).
    - ``rank``: RankMe below ``max(rank_fraction_min * min(N, D), rank_min)`` (2 % of what the
      held-out batch of N rows can reach, at least 1.5: a single direction has rank 1 whatever
      D, and 2 % of a small D is below 1). Scaling by D alone fired on every run whose batch
      was below 2 % of D.
    DINO:
    - ``dino_ce``: the loss within ``dino_loss_margin * ln(K)`` of ln(K) (uniform collapse:
      teacher and student both flat). Early in a run the loss can pass through ln(K) on its
      way down from a random start: a single warning there is a transient, a run of them is not.
    - ``dino_teacher_entropy``: per-sample teacher entropy within ``entropy_margin * ln(K)`` of
      ln(K) (uniform teacher).
    - ``dino_teacher_batch_entropy``: entropy of the batch-mean teacher distribution within
      ``entropy_margin * ln(K)`` of 0 (every sample on one prototype). The per-sample entropy
      is not used for this side: a healthy, sharpened teacher is near 0 per sample.
    - ``dino_kl``: KL(teacher || student) below ``dino_kl_min`` (0.05 nats). Without centering
      the teacher settles on one fixed distribution, neither one-hot nor uniform, that the
      student copies: the entropy and ln(K) checks can miss it, the KL does not (DINO Fig. 7).

    ``check(step, stats)`` returns the warnings (dicts: run, step, stat, value, threshold,
    message), prints one line per warning and logs it. ``diag_cfg.monitor_prefixes`` says
    which of ``embed`` / ``proj`` get the std and rank checks.
    """

    def __init__(self, diag_cfg: DiagnosticsConfig, run_name: str = ""):
        if not 0 < diag_cfg.rank_fraction_min < 1 or diag_cfg.held_out_batch < 2:
            raise ValueError(f"diagnostics: rank_fraction_min must lie in (0, 1) and held_out_batch be >= 2; got "
                             f"{diag_cfg.rank_fraction_min} and {diag_cfg.held_out_batch}")
        self.cfg = diag_cfg
        self.run_name = run_name
        self.prefixes = tuple(diag_cfg.monitor_prefixes)
        self.rank_min = float(diag_cfg.rank_min)

    def thresholds(self, stats: dict[str, float]) -> dict[str, tuple[str, float, float]]:
        """{stat: (op, threshold, margin)} that apply to these stats: op "<" fires when the
        value is below threshold, "near" when |value - threshold| <= margin."""
        c = self.cfg
        out: dict[str, tuple[str, float, float]] = {}
        for p in self.prefixes:
            if f"{p}_dim" not in stats:
                continue
            D = stats[f"{p}_dim"]
            reachable = min(stats.get(f"{p}_n", D), D)  # RankMe <= min(N, D)
            out[f"{p}_std"] = ("<", c.std_ratio_min / math.sqrt(D), 0.0)
            out[f"{p}_rank"] = ("<", max(c.rank_fraction_min * reachable, self.rank_min), 0.0)
        if "dino_ln_k" in stats:
            ln_k = stats["dino_ln_k"]
            out["dino_ce"] = ("near", ln_k, ln_k * c.dino_loss_margin)
            out["dino_teacher_entropy"] = ("near", ln_k, ln_k * c.entropy_margin)
            out["dino_teacher_batch_entropy"] = ("near", 0.0, ln_k * c.entropy_margin)
            out["dino_kl"] = ("<", c.dino_kl_min, 0.0)
        return out

    def threshold_lines(self, stats: dict[str, float]) -> dict[str, float]:
        """Where the monitor fires, for each statistic it checks, in the units a plot shows:
        ``*_std_ratio`` (the std check times sqrt(D)), ``*_rank`` and ``dino_kl`` (it fires below),
        and for a "near" check the edge of its band (ln K minus the margin for the loss and the
        per-sample teacher entropy, the margin for the batch entropy). One source for the monitor
        and the lines notebooks draw (`workbench.diagnostic_plots.plot_training_diagnostics`)."""
        lines = {}
        for name, (op, threshold, margin) in self.thresholds(stats).items():
            if name.endswith("_std"):
                lines[f"{name}_ratio"] = threshold * math.sqrt(stats[f"{name[:-4]}_dim"])
            elif op == "<":
                lines[name] = threshold
            else:
                lines[name] = threshold - margin if threshold > 0 else threshold + margin
        return lines

    def check(self, step: int, stats: dict[str, float]) -> list[dict[str, Any]]:
        found = []
        for name, (op, threshold, margin) in self.thresholds(stats).items():
            value = stats.get(name)
            if value is None or not math.isfinite(value):
                continue
            if (op == "<" and value < threshold) or (op == "near" and abs(value - threshold) <= margin):
                what = f"below threshold {threshold:.4g}" if op == "<" else f"within {margin:.3g} of {threshold:.4g}"
                message = f"collapse warning: run {self.run_name} step {step}: {name} = {value:.4g} {what}"
                found.append({"run": self.run_name, "step": int(step), "stat": name, "value": float(value),
                              "threshold": float(threshold), "message": message})
                print(f"[workbench] {message}", flush=True)
                log.info(message)
        return found


def read_warnings(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``warnings.jsonl`` of a run folder (empty list when none); each names the
    statistic that fired under ``stat`` (a folder written before that name says ``figure``)."""
    path = Path(run_dir) / "warnings.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        if "figure" in row:
            row["stat"] = row.pop("figure")
    return rows
