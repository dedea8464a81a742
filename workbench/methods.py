"""The five pretext tasks of the study as small `nn.Module`s, and their registry.

Every method owns a student backbone ``.encoder`` (the modified ResNet) and its heads. The base
class `Method` does the bookkeeping of ``training_step(views, step) -> (loss, logs)`` (view
check, step, logs); each method's ``loss(views, step) -> (loss, terms)`` is its paper's math.
Hooks: ``before_optimizer_step(step)`` (DINO freezes its last layer), ``after_step(step)``
(EMA teacher, DINO center; the trainer skips it on a skipped step), ``stats(views)``
(method-specific diagnostics, DINO's), ``embed(mel)``, ``project(mel)``, ``schedule_state()``
and ``clip_rule`` (how the trainer clips gradients). ``forward`` is ``training_step`` so a
method can be wrapped by DistributedDataParallel as it is.

Shared rules (the view layout itself is in `workbench.multiview`):
- All views of a batch go through the backbone in ONE forward pass. BatchNorm statistics are
  per view where the method's reference code passes views separately (BYOL, VICReg, Barlow
  Twins; every method under paper-code, as the release), over all views otherwise (SimCLR and
  DINO concatenate their views): `Method.per_view_bn`, ``method.batchnorm``.
- V > 2 views: unordered pairs for the symmetric losses (SimCLR, VICReg, Barlow Twins), ordered
  pairs (view j predicted from view i) for the student/teacher ones (BYOL, DINO).
- Batch statistics use the *global* batch (`gather_views` before NT-Xent, VICReg and Barlow
  Twins); BYOL and DINO losses are per-example means; DINO's center is all-reduced.
- ``fidelity`` ("reference" | "paper-code") goes to every loss, the EMA schedule, DINO's
  temperatures and last-layer freeze, the clipping rule and the BatchNorm rule (docs/paper.md).

Construct from a config with `build_method(cfg)`; the classes take explicit arguments.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench import dist
from workbench.config import FIDELITIES, RunConfig
from workbench.diagnostics import dino_view_stats
from workbench.encoder import build_encoder
from workbench.heads import DINOHead, EMATeacher, Predictor, ProjectionMLP
from workbench.losses import (
    DINOCenter,
    Terms,
    barlow_twins_loss,
    byol_loss,
    dino_cross_entropy,
    dino_targets,
    ema_momentum,
    koleo_loss,
    nt_xent_loss,
    sinkhorn_knopp,
    vicreg_loss,
)
from workbench.multiview import check_views, gather_views, local_crops, mean_over_pairs, one_pass, pairwise


class Method(nn.Module):
    """Shared plumbing: ``forward`` = ``training_step``; subclasses define ``loss`` and hooks."""

    encoder: nn.Module
    reference_clip = "none"  # the method paper's gradient clipping (train.clip="auto", reference)
    reference_batchnorm = "joint"  # BatchNorm statistics in the method's reference code: over all views
    batchnorm: str | None = None  # "joint" | "per-view" | None (the fidelity's; `per_view_bn`)

    def __init__(self, encoder: nn.Module, fidelity: str = "reference"):
        super().__init__()
        if fidelity not in FIDELITIES:
            raise ValueError(f"unknown fidelity {fidelity!r}; expected one of {', '.join(FIDELITIES)}")
        self.encoder = encoder
        self.fidelity = fidelity
        self.step = 0  # the last step seen (schedule_state reports the values in force there)

    def forward(self, views: list[Tensor], step: int) -> tuple[Tensor, Terms]:
        return self.training_step(views, step)

    def training_step(self, views: list[Tensor], step: int) -> tuple[Tensor, Terms]:
        """V views (B, 1, F, T) -> (loss, logs): ``loss`` of the method, ``logs`` its detached
        terms and ``loss``."""
        check_views(views)
        self.step = step
        loss, terms = self.loss(views, step)
        return loss, {"loss": loss.detach(), **terms}

    def loss(self, views: list[Tensor], step: int) -> tuple[Tensor, Terms]:
        raise NotImplementedError

    @property
    def per_view_bn(self) -> bool:
        """BatchNorm statistics per view: ``batchnorm`` when set, else "per-view" for paper-code
        (the release calls the backbone once per view) and the method's reference code's choice
        for reference (BYOL, VICReg, Barlow Twins per view; SimCLR and DINO concatenate views)."""
        rule = self.batchnorm or ("per-view" if self.fidelity == "paper-code" else self.reference_batchnorm)
        if rule not in ("joint", "per-view"):
            raise ValueError(f"method.batchnorm is {rule!r}; expected 'joint', 'per-view' or None")
        return rule == "per-view"

    @property
    def clip_rule(self) -> str:
        """"none" | "global" | "per-parameter": the paper's rule (reference), or the study's
        global norm for every method (paper-code)."""
        return "global" if self.fidelity == "paper-code" else self.reference_clip

    def before_optimizer_step(self, step: int) -> None:
        """Called after backward, before clipping and the optimiser step (gradient surgery)."""

    def after_step(self, step: int) -> None:
        """Called once after each optimiser step that was taken (EMA teachers, DINO's center)."""

    def stats(self, views: list[Tensor]) -> dict[str, float]:
        """Method-specific diagnostics on held-out mel views (the trainer's no_grad eval pass)."""
        return {}

    def embed(self, mel: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, E) backbone embedding (what downstream probes see)."""
        return self.encoder(mel)

    def project(self, mel: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, D) student projector output."""
        return self.projector(self.encoder(mel))

    def schedule_state(self) -> dict[str, float]:
        return {}


class _TeacherStudent(Method):
    """A method with an EMA teacher (BYOL, DINO): the momentum schedule lives here once."""

    def _schedule(self, base_momentum: float, total_steps: int, steps_per_epoch: int, ema_schedule: str) -> None:
        if ema_schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown ema_schedule {ema_schedule!r}; expected 'cosine' or 'constant'")
        self.base_momentum, self.total_steps = base_momentum, total_steps
        self.steps_per_epoch, self.ema_schedule = steps_per_epoch, ema_schedule

    def momentum(self, step: int) -> float:
        """The cosine schedule of the fidelity (`ema_momentum`), or the base value ("constant")."""
        if self.ema_schedule == "constant":
            return self.base_momentum
        return ema_momentum(step, self.total_steps, self.base_momentum, fidelity=self.fidelity,
                            steps_per_epoch=self.steps_per_epoch)


# ----------------------------------------------------------------------------------- SimCLR
class SimCLR(Method):
    """SimCLR (Chen et al. 2020, arXiv 2002.05709): NT-Xent on projected views, temperature 0.1.

    Negatives come from every rank: the local rows are the anchors, the rows gathered from
    every rank (`gather_with_grad`) the candidates (``nt_xent_loss(..., global_views=...)``).
    NT-Xent has no ``fidelity`` switch: the release computes the same value for two views.
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, temperature: float = 0.1,
                 fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.temperature = temperature

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "SimCLR":
        m = cfg.method
        return cls(encoder, ProjectionMLP((cfg.encoder.output_dim, *m.projector_dims)), m.temperature, m.fidelity)

    def loss(self, views, step):
        zs = one_pass(nn.Sequential(self.encoder, self.projector), views, self.per_view_bn)
        if dist.is_distributed():
            gs, offset = gather_views(zs), dist.rank() * zs[0].shape[0]
            return pairwise(len(zs), lambda i, j: nt_xent_loss(
                zs[i], zs[j], self.temperature, global_views=(gs[i], gs[j]), rank_offset=offset))
        return pairwise(len(zs), lambda i, j: nt_xent_loss(zs[i], zs[j], self.temperature))

    def schedule_state(self):
        return {"temperature": self.temperature}


# ----------------------------------------------------------------------------------- BYOL
class BYOL(_TeacherStudent):
    """BYOL (Grill et al. 2020, arXiv 2006.07733): student predictor, EMA teacher, no negatives.

    The teacher is an EMA copy of encoder + projector; the predictor sits on the student only
    and lives inside this module (hence inside the DDP wrapper). ``use_predictor=False`` removes
    it: the symmetric student/teacher pair then collapses (notebook 03).
    """

    reference_batchnorm = "per-view"  # its reference code calls the network on each view

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module | None,
                 base_momentum: float = 0.996, total_steps: int = 1, steps_per_epoch: int = 1,
                 fidelity: str = "reference", ema_schedule: str = "cosine"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.predictor = predictor if predictor is not None else nn.Identity()
        self.use_predictor = predictor is not None
        self.teacher = EMATeacher(encoder, projector)
        self._schedule(base_momentum, total_steps, steps_per_epoch, ema_schedule)

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "BYOL":

        m = cfg.method
        projector = ProjectionMLP((cfg.encoder.output_dim, *m.projector_dims))
        out = m.projector_dims[-1]
        rule = m.projector_dims[0] if m.fidelity == "reference" else 256  # the projector's width | the release's
        hidden = m.predictor_hidden if m.predictor_hidden is not None else rule
        predictor = Predictor(out, hidden) if m.use_predictor else None
        return cls(encoder, projector, predictor, m.ema_momentum, cfg.train.steps, cfg.train.steps_per_epoch,
                   m.fidelity, m.ema_schedule)

    def loss(self, views, step):
        """Reference: the paper's symmetrised loss, the SUM of both directions (Grill et al. 2020,
        Eq. 2: L + L~), averaged over view pairs for V > 2; paper-code: their mean, as the
        release (half the reference, which matters under LARS or a fixed clip)."""
        ps = one_pass(nn.Sequential(self.encoder, self.projector, self.predictor), views, self.per_view_bn)
        zs = one_pass(self.teacher, views, self.per_view_bn)
        loss, terms = mean_over_pairs([byol_loss(ps[i], zs[j], fidelity=self.fidelity)
                                        for i in range(len(views)) for j in range(len(views)) if i != j])
        return (loss if self.fidelity == "paper-code" else 2 * loss), terms

    def after_step(self, step: int) -> None:
        self.teacher.update(nn.Sequential(self.encoder, self.projector), self.momentum(step))

    def schedule_state(self):
        return {"momentum": self.momentum(self.step)}


# ----------------------------------------------------------------------------------- DINO
class DINO(_TeacherStudent):
    """DINO (Caron et al. 2021, arXiv 2104.14294), the paper's "clustering" task.

    Student and EMA teacher share the architecture backbone + `DINOHead`. The teacher's
    logits are centred (``DINOCenter``, momentum 0.9, all-reduced) and sharpened with a
    temperature warmed linearly (reference: DINO's paper, 0.04 to 0.07; paper-code: the study,
    0.02 to 0.04) over ``warmup_teacher_steps`` (the first 10 % of the run, as in both papers),
    then constant; student temperature 0.1. The loss averages every (teacher global view i,
    student view j != i) pair.

    Local crops (``n_local_crops > 0``): shorter segments (``local_crop_frames`` frames) cut at
    random from the global mel views and stretched back to the global frame count, as DINO
    resizes its local crops to a fixed size; this keeps one backbone pass for all views and the
    attention pool's positional embedding. Only the student sees them. Their randomness is
    seeded by (seed, step) and drawn for the global batch (each rank its slice), so a resumed
    run, and a run on several processes, draws the same crops.
    ``use_centering=False`` disables centering (a deliberate collapse, notebook 03).
    The paper's future work, clustering that does not collapse, as switches (off by default):
    ``sinkhorn_iterations > 0`` replaces the EMA center by a Sinkhorn-Knopp balanced assignment
    of the teacher (SwAV; DINOv2, 3 iterations, `sinkhorn_knopp`); ``koleo_weight > 0`` adds the
    KoLeo spreading term on the student's backbone embedding of the global views (DINOv2, 0.1,
    `koleo_loss`).

    Reference fidelity adds DINO's own stabilisers: the last (prototype) layer's gradient is
    dropped for the first ``freeze_last_layer_steps`` steps (main_dino.py
    ``cancel_gradients_last_layer``: 1 epoch of 100, the first 1 % of the run), and gradients are clipped per parameter
    (``reference_clip``; ``utils.clip_gradients``, norm 3.0).
    """

    reference_clip = "per-parameter"

    def __init__(self, encoder: nn.Module, head: nn.Module, n_prototypes: int, base_momentum: float = 0.996,
                 total_steps: int = 1, steps_per_epoch: int = 1, student_temp: float = 0.1,
                 teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.02, warmup_teacher_steps: int = 0,
                 center_momentum: float = 0.9, use_centering: bool = True, n_local_crops: int = 0,
                 local_crop_frames: int = 32, seed: int = 0, fidelity: str = "reference",
                 ema_schedule: str = "cosine", freeze_last_layer_steps: int = 0, sinkhorn_iterations: int = 0,
                 koleo_weight: float = 0.0):
        super().__init__(encoder, fidelity)
        self.head = head
        self.sinkhorn_iterations, self.koleo_weight = sinkhorn_iterations, koleo_weight
        self.teacher = EMATeacher(encoder, head)
        self.center = DINOCenter(n_prototypes, momentum=center_momentum)
        self._schedule(base_momentum, total_steps, steps_per_epoch, ema_schedule)
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self._teacher_rows: Tensor | None = None  # this step's teacher logits, for the center
        self.student_temp = student_temp
        self.teacher_temp_final = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_steps = warmup_teacher_steps
        self.use_centering = use_centering
        self.n_local_crops = n_local_crops
        self.local_crop_frames = local_crop_frames
        self.seed = seed

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "DINO":

        m = cfg.method
        # Release: Head(1024, [1024, 1024, 256, 4096]) = 1024 -> 1024 -> 1024 -> 256 -> 4096.
        head = DINOHead(cfg.encoder.output_dim, tuple(m.dino_hidden_dims), m.dino_bottleneck, m.n_prototypes,
                        form=m.fidelity)
        frames = max(1, round(cfg.audio.n_frames * m.local_crop_seconds / cfg.audio.segment_seconds))
        reference = m.fidelity == "reference"
        # None = the fidelity's value: DINO paper 0.04 -> 0.07 and 1 frozen epoch; the study 0.02 -> 0.04, none
        teacher_temp = m.teacher_temp if m.teacher_temp is not None else (0.07 if reference else 0.04)
        warmup_temp = m.warmup_teacher_temp if m.warmup_teacher_temp is not None else (0.04 if reference else 0.02)
        freeze = m.freeze_last_layer_fraction if m.freeze_last_layer_fraction is not None else 0.01 * reference
        return cls(encoder, head, m.n_prototypes, m.ema_momentum, cfg.train.steps, cfg.train.steps_per_epoch,
                   m.student_temp, teacher_temp, warmup_temp, round(m.warmup_teacher_temp_fraction * cfg.train.steps),
                   m.center_momentum, m.use_centering, m.n_local_crops, frames, cfg.train.seed, m.fidelity,
                   m.ema_schedule, round(freeze * cfg.train.steps), m.sinkhorn_iterations, m.koleo_weight)

    def teacher_temp(self, step: int) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``, then constant."""
        if step >= self.warmup_teacher_steps:
            return self.teacher_temp_final
        frac = step / self.warmup_teacher_steps
        return self.warmup_teacher_temp + frac * (self.teacher_temp_final - self.warmup_teacher_temp)

    def local_crops(self, views: list[Tensor], step: int) -> list[Tensor]:
        """``n_local_crops`` tensors (B, 1, F, T), seeded by (seed, step) (`multiview.local_crops`)."""
        return local_crops(views, self.n_local_crops, self.local_crop_frames, self.seed * 1_000_003 + step * 101)

    def logits(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1, F, T) -> (student logits (B, K), teacher logits (B, K)), before temperatures."""
        return self.head(self.encoder(mel)), self.teacher(mel)

    def project(self, mel: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, bottleneck) student head output before the prototypes
        (paper-code head: its logits, as that head has no separate bottleneck output)."""
        h = self.encoder(mel)
        return self.head.mlp(h) if self.head.last_layer is not None else self.head(h)

    def _center_in_force(self) -> Tensor:
        """The center subtracted from the teacher: zeros when centering is off or replaced."""
        if self.use_centering and not self.sinkhorn_iterations:
            return self.center.center
        return torch.zeros_like(self.center.center)

    def teacher_targets(self, teacher: list[Tensor], teacher_temp: float) -> list[Tensor]:
        """What the student learns from, per view (B, K) each: the centred, sharpened softmax of
        the teacher's logits, or with ``sinkhorn_iterations`` the Sinkhorn-Knopp balanced
        assignment over every view's rows together (DINOv2). The loss and the diagnostics both
        read it, so a collapse figure is about the distribution the loss uses."""
        if self.sinkhorn_iterations:
            balanced = sinkhorn_knopp(torch.cat(teacher), teacher_temp, self.sinkhorn_iterations)
            return list(balanced.split(len(teacher[0])))
        center = self._center_in_force()
        return [dino_targets(t, center, teacher_temp) for t in teacher]

    def loss(self, views, step):
        globals_ = list(views)
        crops = globals_ + (self.local_crops(globals_, step) if self.n_local_crops else [])
        embedded = one_pass(self.encoder, crops, self.per_view_bn)
        student = one_pass(self.head, embedded, self.per_view_bn)
        teacher = one_pass(self.teacher, globals_, self.per_view_bn)
        if not self.sinkhorn_iterations:
            self._teacher_rows = torch.cat(teacher, dim=0).detach()  # the center moves in after_step
        targets = self.teacher_targets(teacher, self.teacher_temp(step))
        loss, terms = mean_over_pairs([dino_cross_entropy(student[j], targets[i], self.student_temp,
                                                          fidelity=self.fidelity)
                                       for i in range(len(teacher)) for j in range(len(student)) if i != j])
        if self.koleo_weight:  # spread the student's global embeddings over the sphere (DINOv2)
            koleo = torch.stack([koleo_loss(h)[0] for h in embedded[:len(globals_)]]).mean()
            loss, terms = loss + self.koleo_weight * koleo, {**terms, "koleo": koleo.detach()}
        return loss, terms

    def before_optimizer_step(self, step: int) -> None:
        """No gradient for the prototypes during the first ``freeze_last_layer_steps`` steps."""
        last = getattr(self.head, "last_layer", None)
        if last is not None and step <= self.freeze_last_layer_steps:
            for p in last.parameters():
                p.grad = None

    def after_step(self, step: int) -> None:
        """Teacher EMA and center update (DINO updates its center with the step's teacher
        logits; here after the optimiser step, so a skipped step moves neither)."""
        self.teacher.update(nn.Sequential(self.encoder, self.head), self.momentum(step))
        if self.use_centering and self._teacher_rows is not None:
            self.center.update(self._teacher_rows)
        self._teacher_rows = None

    def stats(self, views: list[Tensor]) -> dict[str, float]:

        student, teacher = self.logits(torch.cat(views))
        targets = torch.cat(self.teacher_targets(list(teacher.split(views[0].shape[0])), self.teacher_temp(self.step)))
        return dino_view_stats(student, targets, len(views), self.student_temp, self._center_in_force())

    def schedule_state(self):
        return {"momentum": self.momentum(self.step), "teacher_temp": self.teacher_temp(self.step),
                "student_temp": self.student_temp}


# ----------------------------------------------------------------------------------- VICReg
class VICReg(Method):
    """VICReg (Bardes et al. 2022, arXiv 2105.04906), the paper's "feature statistics" task.

    Variance and covariance are computed over the global batch (`gather_with_grad`).
    Coefficients None take the fidelity's values (reference 25 / 25 / 1, paper-code 1 / 1 / 1).
    """

    reference_batchnorm = "per-view"  # its reference code calls the network on each view

    def __init__(self, encoder: nn.Module, projector: nn.Module, inv_coeff: float | None = None,
                 var_coeff: float | None = None, cov_coeff: float | None = None, fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.coeffs = dict(inv_coeff=inv_coeff, var_coeff=var_coeff, cov_coeff=cov_coeff)

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "VICReg":
        m = cfg.method
        return cls(encoder, ProjectionMLP((cfg.encoder.output_dim, *m.projector_dims)), m.inv_coeff, m.var_coeff,
                   m.cov_coeff, m.fidelity)

    def loss(self, views, step):
        zs = gather_views(one_pass(nn.Sequential(self.encoder, self.projector), views, self.per_view_bn))
        return pairwise(len(zs), lambda i, j: vicreg_loss(zs[i], zs[j], **self.coeffs, fidelity=self.fidelity))


# ----------------------------------------------------------------------------------- Barlow Twins
class BarlowTwins(Method):
    """Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): cross-correlation pushed to identity.

    The cross-correlation is standardised over the global batch (`gather_with_grad`).
    ``lambd`` None takes the fidelity's value (reference 5e-3, paper-code 1.0 on means).
    """

    reference_batchnorm = "per-view"  # its reference code calls the network on each view

    def __init__(self, encoder: nn.Module, projector: nn.Module, lambd: float | None = None,
                 fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.lambd = lambd

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "BarlowTwins":
        m = cfg.method
        return cls(encoder, ProjectionMLP((cfg.encoder.output_dim, *m.projector_dims)), m.lambd, m.fidelity)

    def loss(self, views, step):
        zs = gather_views(one_pass(nn.Sequential(self.encoder, self.projector), views, self.per_view_bn))
        return pairwise(len(zs), lambda i, j: barlow_twins_loss(zs[i], zs[j], self.lambd, fidelity=self.fidelity))


METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "byol": BYOL,
    "dino": DINO,
    "vicreg": VICReg,
    "barlow_twins": BarlowTwins,
}


def build_method(cfg: RunConfig) -> Method:
    """The method named by ``cfg.method.name`` with a fresh encoder (`build_encoder`)."""
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    torch.manual_seed(cfg.train.seed)  # same initial weights for the same config
    method = METHODS[name].from_config(build_encoder(cfg.encoder, cfg.audio), cfg)
    method.batchnorm = cfg.method.batchnorm
    method.per_view_bn  # validates the setting
    return method
