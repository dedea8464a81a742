"""The five pretext losses as pure functions of (B, D) tensors, DINO's center, the EMA schedule.

Every loss reads its sizes from its inputs, never calls ``.item()``, and computes in float32
with autocast disabled (a bf16 similarity matrix or softmax changes the loss it is meant to
compute). Each takes ``fidelity``: ``"reference"`` (the original method paper and its
reference code, the default) or ``"paper-code"`` (the behaviour of the released code of
Meseguer-Brocal et al., ICASSP 2024, deezer/multi-view-ssl-benchmark,
``ssl_framework/selfsupervised_losses.py``; docs/paper.md departures 1-5). Each docstring gives
the exact relation between the two, which tests/test_losses.py checks numerically.

One return convention: every loss returns ``(loss, terms)``, a scalar with gradient and a dict
of detached scalar terms for the logs (empty where the loss has no parts).

Two views per call. Methods with V > 2 views average the loss over view pairs, as the
released code does. Distributed: the caller gathers with ``workbench.dist.gather_with_grad``
before the call (VICReg and Barlow Twins statistics over the global batch; NT-Xent negatives
from every rank, see its ``global_views``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench import dist
from workbench.config import FIDELITIES

Terms = dict[str, Tensor]  # detached float tensors logged beside the loss (may be empty)


def _check_fidelity(fidelity: str) -> None:
    if fidelity not in FIDELITIES:
        raise ValueError(f"unknown fidelity {fidelity!r}; expected one of {', '.join(FIDELITIES)}")


def _check_pair(name: str, a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{name} expects two (B, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _f32(x: Tensor) -> Tensor:
    """At least float32 (bf16/fp16 up-cast; float64 kept, for the tests' exact comparisons)."""
    return x if x.dtype == torch.float64 else x.float()


def _off_diagonal(c: Tensor) -> Tensor:
    """(D, D) -> (D*(D-1),) the off-diagonal entries (Barlow Twins reference code's trick)."""
    d = c.shape[0]
    return c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def _batch_standardise(z: Tensor, eps: float = 1e-5) -> Tensor:
    """(B, D) -> (B, D) as BatchNorm1d(affine=False) in training mode: biased variance, eps 1e-5."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.1, *,
                 global_views: tuple[Tensor, Tensor] | None = None, rank_offset: int = 0) -> tuple[Tensor, Terms]:
    """SimCLR's NT-Xent (normalised temperature-scaled cross-entropy) of two views.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations",
    https://arxiv.org/abs/2002.05709; reference code google-research/simclr
    (``objective.add_contrastive_loss``). Paper: cosine similarity, temperature 0.1.

    z1, z2: (B, D) projections of the two views of the same B examples (row i of z1 and row i
    of z2 are a positive pair). Every one of the 2B rows is an anchor; its candidates are the
    other 2N - 1 rows; loss = mean over anchors of -log softmax(cos / temperature)[positive].

    Memory O(B N), never (N, N, D): rows are L2-normalised once and all similarities come
    from one (2B, D) x (D, 2N) matmul; the self-similarity is masked with -inf.

    Distributed (``global_views``): pass this rank's rows as z1, z2 and the gathered rows of
    every rank in rank order (``dist.gather_with_grad``) as ``global_views=(z1_all, z2_all)``,
    each (N, D), with ``rank_offset`` = index of this rank's first row in them (rank * B).
    The anchors are then the local rows and the candidates all 2N rows. With the gradient
    rule of ``workbench.dist`` and DDP's gradient mean this is exactly the single-process
    gradient on the global batch. Passing the gathered tensors as z1, z2 (no ``global_views``)
    is also right, at W times the compute.

    Returns (loss, {}). Known value: perfectly aligned pairs, mutually orthogonal across i
    (B <= D), give log(1 + (2B - 2) exp(-1 / temperature)).

    No ``fidelity``: the released code computes the same value for two views (its departure,
    docs/paper.md 7, is memory, an (N, N, D) broadcast, and a positive index valid only for V = 2).
    """
    _check_pair("nt_xent_loss", z1, z2)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        a = F.normalize(_f32(torch.cat([z1, z2])), dim=1)  # (2B, D) anchors
        if global_views is None:
            n, cand, offset = b, a, 0
        else:
            g1, g2 = global_views
            _check_pair("nt_xent_loss global_views", g1, g2)
            if g1.shape[1] != z1.shape[1] or not 0 <= rank_offset <= g1.shape[0] - b:
                raise ValueError(f"global_views {tuple(g1.shape)} and rank_offset {rank_offset} do not hold "
                                 f"the local rows {tuple(z1.shape)}")
            n, offset = g1.shape[0], rank_offset
            cand = F.normalize(_f32(torch.cat([g1, g2])), dim=1)  # (2N, D) candidates
        logits = a @ cand.T / temperature  # (2B, 2N)
        i = torch.arange(b, device=z1.device) + offset  # this rank's rows in the candidates
        self_idx = torch.cat([i, i + n])  # (2B,)
        pos_idx = torch.cat([i + n, i])  # (2B,)
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[torch.arange(2 * b, device=z1.device), self_idx] = True
        logits = logits.masked_fill(self_mask, float("-inf"))
        return F.cross_entropy(logits, pos_idx), {}


def byol_loss(p: Tensor, z: Tensor, *, fidelity: str = "reference") -> tuple[Tensor, Terms]:
    """BYOL's regression loss between the student's prediction and the teacher's projection.

    Grill et al. 2020, "Bootstrap your own latent", https://arxiv.org/abs/2006.07733;
    reference code deepmind/deepmind-research ``byol/byol_experiment.py`` (``regression_loss``).

    p: (B, D) student predictions; z: (B, D) teacher projections of the other view (detached
    here: the stop-gradient of the paper). Returns (loss, {}).

    - reference: mean over the batch of ||p/|p| - z/|z| ||^2 = 2 - 2 cos(p_i, z_i).
    - paper-code (docs/paper.md 1): the release sums the product of the normalised vectors over the
      batch axis (``(t * s).sum(dim=0)``, (D,)), then averages ``2 - 2 *`` that over D:
      loss = 2 - 2 (B / D) mean_i cos(p_i, z_i). Exactly: loss_pc - 2 = (B / D) (loss_ref - 2).
      Same minimiser and direction, gradient scaled by B / D (0.125 at B = 256, D = 2048).
    """
    _check_pair("byol_loss", p, z)
    _check_fidelity(fidelity)
    with torch.autocast(device_type=p.device.type, enabled=False):
        pn = F.normalize(_f32(p), dim=1)
        zn = F.normalize(_f32(z.detach()), dim=1)
        if fidelity == "paper-code":
            return (2 - 2 * (pn * zn).sum(dim=0)).mean(), {}
        return (2 - 2 * (pn * zn).sum(dim=1)).mean(), {}


def dino_loss(student_logits: Tensor, teacher_logits: Tensor, center: Tensor, student_temp: float = 0.1,
              teacher_temp: float = 0.04, *, fidelity: str = "reference") -> tuple[Tensor, Terms]:
    """DINO's cross-entropy between the centred, sharpened teacher and the student.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
    https://arxiv.org/abs/2104.14294; reference code facebookresearch/dino ``main_dino.DINOLoss``.

    student_logits: (B, K) student head output for one view; teacher_logits: (B, K) teacher
    head output for another view (detached here); center: (1, K) (``DINOCenter.center``;
    zeros to switch centering off). Temperatures are arguments because they follow a
    schedule (teacher warm-up; see `MethodConfig.teacher_temp`). Returns (loss, {}) with loss =
    mean_i sum_k -t_ik log s_ik, t = softmax((teacher - center) / teacher_temp),
    s = softmax(student / student_temp). The method pairs views (teacher view != student view).

    - reference: log s = log_softmax(student / student_temp).
    - paper-code (docs/paper.md 4): log s = clamp(log(softmax(student / student_temp)), min=-100)
      as the release's ``log_clap``. Identical wherever every log-probability is above -100
      (checked to float precision). Where a student probability lies in (0, e^-100) its term
      is clamped and carries no gradient, so a prototype the teacher wants but the student
      has pushed far down is never pulled back. Where it underflows to exactly 0 (scaled
      logit gap above about 104 in float32, 17 in float16) the backward pass computes 0 / 0:
      the whole row's gradient becomes NaN, as in the release.
    """
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"dino_loss expects student and teacher logits (B, K) of one shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if center.shape != (1, student_logits.shape[1]):
        raise ValueError(f"dino_loss expects center (1, {student_logits.shape[1]}), got {tuple(center.shape)}")
    _check_fidelity(fidelity)
    return dino_cross_entropy(student_logits, dino_targets(teacher_logits, center, teacher_temp), student_temp,
                              fidelity=fidelity)


def dino_targets(teacher_logits: Tensor, center: Tensor, teacher_temp: float) -> Tensor:
    """DINO's teacher targets (B, K): softmax((teacher - center) / teacher_temp), detached, in
    float32 whatever the autocast (the centred, sharpened teacher of `dino_loss`)."""
    with torch.autocast(device_type=teacher_logits.device.type, enabled=False):
        return F.softmax((_f32(teacher_logits.detach()) - _f32(center)) / teacher_temp, dim=-1)


def dino_cross_entropy(student_logits: Tensor, targets: Tensor, student_temp: float = 0.1, *,
                       fidelity: str = "reference") -> tuple[Tensor, Terms]:
    """mean_i sum_k -t_ik log s_ik, s = softmax(student / student_temp): the student side of
    `dino_loss`, for any teacher targets (B, K) whose rows sum to 1 (the centred, sharpened
    softmax of `dino_loss`, or `sinkhorn_knopp`'s balanced assignment). ``fidelity`` as in
    `dino_loss` (paper-code: the release's clamped log). Returns (loss, {})."""
    if student_logits.dim() != 2 or student_logits.shape != targets.shape:
        raise ValueError(f"dino_cross_entropy expects student logits and targets (B, K) of one shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(targets.shape)}")
    _check_fidelity(fidelity)
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        t = _f32(targets.detach())
        if fidelity == "paper-code":
            log_s = torch.clamp(torch.log(F.softmax(_f32(student_logits) / student_temp, dim=-1)), min=-100)
        else:
            log_s = F.log_softmax(_f32(student_logits) / student_temp, dim=-1)
        return torch.sum(-t * log_s, dim=-1).mean(), {}


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
    """Balanced soft assignment of the teacher's rows to the K prototypes, instead of centering.

    SwAV (Caron et al. 2020, https://arxiv.org/abs/2006.09882, ``distributed_sinkhorn``) and
    DINOv2 (Oquab et al. 2023, https://arxiv.org/abs/2304.07193,
    ``SinkhornKnoppTeacher``): Q = exp(logits / teacher_temp)^T (K, N), scaled to sum 1, then
    ``n_iterations`` times: every prototype's row to total 1/K, every sample's column to total
    1/N; returned as (N, K) times N. teacher_logits: (N, K) local rows (N summed over ranks
    through `workbench.dist`). After the last step each returned row (a sample) sums to exactly
    1, and each prototype's column sums to N/K up to the residual of the last row step: no
    prototype can take the whole batch, which is what prevents the one-prototype collapse.
    """
    if teacher_logits.dim() != 2:
        raise ValueError(f"sinkhorn_knopp expects teacher logits (N, K), got {tuple(teacher_logits.shape)}")
    with torch.autocast(device_type=teacher_logits.device.type, enabled=False):
        logits = teacher_logits.detach().double()
        logits = logits - dist.all_reduce_max(logits.max())  # a global constant: overflow-safe, cancels
        q = torch.exp(logits / teacher_temp).t()  # (K, N)
        n = q.shape[1] * dist.world_size()
        k = q.shape[0]
        q /= dist.all_reduce_sum(q.sum())
        for _ in range(n_iterations):
            q /= dist.all_reduce_sum(q.sum(dim=1, keepdim=True))  # each prototype: 1/K of the mass
            q /= k
            q /= q.sum(dim=0, keepdim=True)  # each sample: 1/N (its own column, no collective)
            q /= n
        return (q * n).t().to(teacher_logits.dtype)


def koleo_loss(z: Tensor, eps: float = 1e-8) -> tuple[Tensor, Terms]:
    """KoLeo regulariser: -mean_i log(min_{j != i} ||u_i - u_j||), u = z / ||z||.

    Sablayrolles et al. 2019 ("Spreading vectors for similarity search",
    https://arxiv.org/abs/1806.03198), as DINOv2 applies it to the student's embedding
    (``KoLeoLoss``, weight 0.1): a differential entropy estimator whose minimisation spreads
    the batch over the sphere, so no two samples collapse onto one point. z: (B, D), B >= 2
    (local rows: neighbours within the rank's batch, as DINOv2). Known value: 4 points at
    90 degrees on a circle are sqrt(2) from their nearest neighbour, loss -log(sqrt(2)).
    Returns (loss, {})."""
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"koleo_loss expects (B, D) with B >= 2, got {tuple(z.shape)}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        u = F.normalize(_f32(z), dim=1, eps=eps)
        sim = u @ u.t()
        sim.fill_diagonal_(-2.0)  # never one's own neighbour
        nearest = sim.argmax(dim=1)
        d = (u - u[nearest]).norm(dim=1)
        return -torch.log(d + eps).mean(), {}


def vicreg_loss(z1: Tensor, z2: Tensor, inv_coeff: float | None = None, var_coeff: float | None = None,
                cov_coeff: float | None = None, *, fidelity: str = "reference") -> tuple[Tensor, Terms]:
    """VICReg: variance-invariance-covariance regularisation of two views.

    Bardes, Ponce, LeCun 2022, "VICReg", https://arxiv.org/abs/2105.04906; reference code
    facebookresearch/vicreg ``main_vicreg.VICReg.forward``.

    z1, z2: (B, D) projections of the two views. Returns (loss, terms): terms (detached)
    ``invariance``, ``variance``, ``covariance`` are the weighted contributions, summing to the
    loss. Coefficients left as None take the fidelity's values: reference 25 / 25 / 1 (the
    paper), paper-code 1 / 1 / 1 (the release's ``FeatureStatsLoss`` defaults); a number given
    explicitly is used under either fidelity.

    - reference: inv = mean (z1 - z2)^2; var = mean_d relu(1 - sqrt(Var_d z + 1e-4)) averaged
      over the two views (unbiased Var); cov = sum of squared off-diagonal entries of the
      covariance (z - mean)^T (z - mean) / (B - 1), divided by D, summed over the two views.
    - paper-code (docs/paper.md 2): inv the same; var with eps 1e-5 instead of 1e-4; cov from
      C = BN(z)^T BN(z) / (B - 1) with BN the biased batch standardisation (a correlation
      matrix times B / (B - 1)), averaged over the 2 D (D - 1) off-diagonal entries of both
      views instead of summed / D. Relative to the invariance term, the covariance term's
      weight per squared entry is (1 / (2 D (D - 1))) / 1 instead of (1 / D) / 25: 2 (D - 1) / 25
      = 164 times weaker at D = 2048 (docs/paper.md's "about 80x" is (D - 1) / 25, per view), on top
      of measuring correlation instead of covariance.
    """
    _check_pair("vicreg_loss", z1, z2)
    _check_fidelity(fidelity)
    default = (25.0, 25.0, 1.0) if fidelity == "reference" else (1.0, 1.0, 1.0)
    inv_coeff = default[0] if inv_coeff is None else inv_coeff
    var_coeff = default[1] if var_coeff is None else var_coeff
    cov_coeff = default[2] if cov_coeff is None else cov_coeff
    b, d = z1.shape
    if b < 2:
        raise ValueError(f"vicreg_loss needs a batch of at least 2, got {tuple(z1.shape)}")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1, z2 = _f32(z1), _f32(z2)
        inv = F.mse_loss(z1, z2)
        eps = 1e-4 if fidelity == "reference" else 1e-5
        var = 0.5 * (F.relu(1 - torch.sqrt(z1.var(dim=0) + eps)).mean()
                     + F.relu(1 - torch.sqrt(z2.var(dim=0) + eps)).mean())
        if fidelity == "paper-code":
            cov = 0.0
            for z in (z1, z2):
                zs = _batch_standardise(z)
                cov = cov + _off_diagonal(zs.T @ zs / (b - 1)).pow(2).sum()
            cov = cov / (2 * d * (d - 1))
        else:
            cov = 0.0
            for z in (z1, z2):
                zc = z - z.mean(dim=0)
                cov = cov + _off_diagonal(zc.T @ zc / (b - 1)).pow(2).sum() / d
        terms = {"invariance": inv_coeff * inv, "variance": var_coeff * var, "covariance": cov_coeff * cov}
        loss = terms["invariance"] + terms["variance"] + terms["covariance"]
    return loss, {k: v.detach() for k, v in terms.items()}


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float | None = None, *,
                      fidelity: str = "reference") -> tuple[Tensor, Terms]:
    """Barlow Twins: the cross-correlation of the two views' standardised embeddings pushed to I.

    Zbontar et al. 2021, "Barlow Twins", https://arxiv.org/abs/2103.03230; reference code
    facebookresearch/barlowtwins ``main.BarlowTwins.forward``.

    z1, z2: (B, D). Returns (loss, terms): terms (detached) ``invariance`` (on-diagonal) and
    ``redundancy`` (weighted off-diagonal) sum to the loss. ``lambd`` None takes the fidelity's
    value: reference 5e-3 (the paper), paper-code 1.0 (the release's ``off_coef``).

    - reference: c = BN(z1)^T BN(z2) / B (BN = BatchNorm1d(affine=False) in training mode:
      biased variance, eps 1e-5); loss = sum_i (1 - c_ii)^2 + lambd sum_{i != j} c_ij^2.
    - paper-code (docs/paper.md 3): c' = BN(z1)^T BN(z2) / (B - 1) = c B / (B - 1), and means
      instead of sums: loss = mean_i (1 - c'_ii)^2 + lambd mean_{i != j} c'_ij^2. With
      lambd = 1 this is (1 / D) [sum_i (1 - c'_ii)^2 + 1 / (D - 1) sum_{i != j} c'_ij^2]: an
      effective lambda of 1 / (D - 1) = 4.9e-4 at D = 2048 (10x below the paper's 5e-3), the
      whole loss (and gradient) scaled by 1 / D, and the diagonal pulled to (B - 1) / B
      instead of 1 (0.996 at B = 256: a small shift of the optimum, though once c_ii is near 1
      it is a visible share of the on-diagonal term's value).
    """
    _check_pair("barlow_twins_loss", z1, z2)
    _check_fidelity(fidelity)
    lambd = (5e-3 if fidelity == "reference" else 1.0) if lambd is None else lambd
    b, d = z1.shape
    if b < 2:
        raise ValueError(f"barlow_twins_loss needs a batch of at least 2, got {tuple(z1.shape)}")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1n, z2n = _batch_standardise(_f32(z1)), _batch_standardise(_f32(z2))
        if fidelity == "paper-code":
            c = z1n.T @ z2n / (b - 1)  # (D, D)
            on = (1 - torch.diagonal(c)).pow(2).mean()
            off = lambd * _off_diagonal(c).pow(2).mean()
        else:
            c = z1n.T @ z2n / b  # (D, D)
            on = (1 - torch.diagonal(c)).pow(2).sum()
            off = lambd * _off_diagonal(c).pow(2).sum()
        loss = on + off
    return loss, {"invariance": on.detach(), "redundancy": off.detach()}


class DINOCenter(nn.Module):
    """DINO's teacher center: a (1, K) buffer, an EMA of the teacher logits' batch mean.

    Caron et al. 2021, facebookresearch/dino ``DINOLoss.update_center``:
    center <- m center + (1 - m) mean over the global batch of the teacher logits
    (before centering and sharpening). The batch mean is all-reduced over ranks through
    ``workbench.dist.all_reduce_mean`` (every rank holds the same number of rows). The
    released code does the same (momentum 0.9).
    """

    def __init__(self, n_prototypes: int, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, n_prototypes))

    @torch.no_grad()
    def update(self, teacher_logits: Tensor, momentum: float | None = None) -> None:
        """teacher_logits: (N, K), all teacher rows of the step (views stacked); in place."""
        if teacher_logits.dim() != 2 or teacher_logits.shape[1] != self.center.shape[1]:
            raise ValueError(f"DINOCenter.update expects (N, {self.center.shape[1]}), "
                             f"got {tuple(teacher_logits.shape)}")
        m = self.momentum if momentum is None else momentum
        batch_center = teacher_logits.detach().float().mean(dim=0, keepdim=True)  # (1, K)
        batch_center = dist.all_reduce_mean(batch_center)
        self.center.mul_(m).add_(batch_center.to(self.center.dtype), alpha=1 - m)

    def extra_repr(self) -> str:
        return f"n_prototypes={self.center.shape[1]}, momentum={self.momentum}"


def ema_momentum(step: int, total_steps: int, base: float = 0.996, *, fidelity: str = "reference",
                 steps_per_epoch: int | None = None) -> float:
    """Teacher EMA momentum at ``step`` (0-based): a cosine from ``base`` rising towards 1.

    BYOL (Grill et al. 2020, section 3.2) and DINO (``utils.cosine_scheduler``):
    m = 1 - (1 - base) (cos(pi step / L) + 1) / 2.

    - reference: L = total_steps, so m reaches 1 at the end of the run.
    - paper-code (docs/paper.md 5): the release's ``get_network_momentum`` builds the cosine over
      ``schedule_epochs = 999`` epochs of ``steps_per_epoch`` steps and does not cap it at the
      run length: L = 999 * steps_per_epoch, and m stays close to ``base`` in any run much
      shorter than 999 epochs (a 100-epoch run ends at m = 0.99610 from base 0.996).
      ``steps_per_epoch`` is required here. Beyond L (never in practice) m = 1.
    """
    _check_fidelity(fidelity)
    if fidelity == "paper-code":
        if not steps_per_epoch or steps_per_epoch <= 0:
            raise ValueError("ema_momentum(fidelity='paper-code') needs steps_per_epoch > 0")
        length = 999 * steps_per_epoch
    else:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        length = total_steps
    progress = min(max(step, 0) / length, 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
