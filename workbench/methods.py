"""The five pretext tasks of the study as small `nn.Module`s, and their registry.

Every method owns a student backbone ``.encoder`` (the modified ResNet) and its heads, and offers
``training_step(views, step) -> (loss, logs)``, ``after_step(step)`` (EMA teacher update),
``embed(mel)``, ``project(mel)`` and ``schedule_state()``. ``forward`` is ``training_step`` so a
method can be wrapped by DistributedDataParallel as it is.

Shared rules (PAPER.md, STYLE.md):
- All views of a batch go through the backbone in ONE forward pass (``torch.cat`` on the batch
  axis, then split), never a Python loop over views. BatchNorm therefore normalises over all
  views of the batch together (as SimCLR's and BYOL's reference code do; the released code calls
  the backbone once per view, so its BatchNorm sees one view at a time).
- V > 2 views: the loss is averaged over view pairs, as the paper's code does: unordered pairs
  for the symmetric losses (SimCLR, VICReg, Barlow Twins), ordered pairs (prediction of view j
  from view i, i != j) for the student/teacher ones (BYOL, DINO).
- Statistics over the batch use the *global* batch: embeddings go through
  `workbench.dist.gather_with_grad` before NT-Xent (negatives from every rank), VICReg and
  Barlow Twins. BYOL and DINO losses are per-example means (DDP's gradient averaging does the
  rest); DINO's center is all-reduced inside `DINOCenter.update`.
- ``fidelity`` ("reference" | "paper-code") goes to every loss and to the EMA schedule
  (PAPER.md departures 1-5).

Construct from a config with `build_method(cfg)`; the classes take explicit arguments.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench import dist
from workbench.config import RunConfig
from workbench.losses import (DINOCenter, barlow_twins_loss, byol_loss, dino_loss, ema_momentum, nt_xent_loss,
                              vicreg_loss)

FIDELITIES = ("reference", "paper-code")


# ----------------------------------------------------------------------------------- helpers
def _check_views(views: list[Tensor], min_views: int = 2) -> None:
    if not isinstance(views, (list, tuple)) or len(views) < min_views:
        raise ValueError(f"expected a list of at least {min_views} views, got {type(views).__name__} "
                         f"of length {len(views) if isinstance(views, (list, tuple)) else '-'}")
    shape = views[0].shape
    for v in views:
        if v.dim() != 4 or v.shape[1] != 1 or v.shape != shape:
            raise ValueError(f"views must be (B, 1, F, T) tensors of one shape; got "
                             f"{[tuple(u.shape) for u in views]}")


def _one_pass(module: nn.Module, views: list[Tensor]) -> list[Tensor]:
    """V tensors (B, ...) -> module(cat) split back into V tensors (B, ...): one forward pass."""
    out = module(torch.cat(list(views), dim=0))
    return list(out.split(views[0].shape[0], dim=0))


def _gather_views(zs: list[Tensor]) -> list[Tensor]:
    """V local (B, D) -> V global (W*B, D) with one collective (rows stay aligned across views)."""
    if not dist.is_distributed():
        return zs
    stacked = dist.gather_with_grad(torch.stack(zs, dim=1))  # (W*B, V, D)
    return list(stacked.unbind(dim=1))


def _loss_and_terms(out) -> tuple[Tensor, dict[str, Tensor]]:
    """A loss function may return a scalar or (scalar, detached terms dict)."""
    if isinstance(out, tuple):
        return out[0], dict(out[1])
    return out, {}


def _mean_over_pairs(results: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean loss and mean terms of per-pair results."""
    loss = torch.stack([r[0] for r in results]).mean()
    terms = {k: torch.stack([r[1][k].detach().float() for r in results]).mean() for k in results[0][1]}
    return loss, terms


def _pairwise(n_views: int, loss_fn: Callable[[int, int], Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """``loss_fn(i, j)`` averaged over the V(V-1)/2 view pairs i < j, as the release averages
    V > 2 views; returns (loss, detached mean terms)."""
    return _mean_over_pairs([_loss_and_terms(loss_fn(i, j)) for i in range(n_views) for j in range(i + 1, n_views)])


class _EMATeacher(nn.Module):
    """A frozen copy of student modules, updated by exponential moving average of the student's
    parameters (BYOL, DINO). Its BatchNorm layers use batch statistics like the student's and
    keep their own running buffers."""

    def __init__(self, *student: nn.Module):
        super().__init__()
        self.net = nn.Sequential(*[copy.deepcopy(m) for m in student])
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @torch.no_grad()
    def update(self, student: nn.Sequential, momentum: float) -> None:
        t = [p for p in self.net.parameters()]
        s = [p.detach() for p in student.parameters()]
        torch._foreach_mul_(t, momentum)
        torch._foreach_add_(t, s, alpha=1.0 - momentum)


class Method(nn.Module):
    """Shared plumbing: ``forward`` = ``training_step``; subclasses define the rest."""

    encoder: nn.Module

    def __init__(self, encoder: nn.Module, fidelity: str = "reference"):
        super().__init__()
        if fidelity not in FIDELITIES:
            raise ValueError(f"unknown fidelity {fidelity!r}; expected one of {', '.join(FIDELITIES)}")
        self.encoder = encoder
        self.fidelity = fidelity
        self.step = 0  # the last step seen (schedule_state reports the values in force there)

    def forward(self, views: list[Tensor], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.training_step(views, step)

    def training_step(self, views: list[Tensor], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called once after each optimiser step (EMA teachers)."""

    def embed(self, mel: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, E) backbone embedding (what downstream probes see)."""
        return self.encoder(mel)

    def project(self, mel: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, D) student projector output."""
        return self.projector(self.encoder(mel))

    def schedule_state(self) -> dict[str, float]:
        return {}


def _projector(dims: tuple[int, ...], encoder_dim: int) -> nn.Module:
    """``dims`` are the layer widths after the encoder, as the release's ``Head(feature_dim,
    layers_feature_dim=[1024, 1024, 2048])``: 1024 -> 1024 -> 1024 -> 2048, three Linear layers."""
    from workbench.heads import ProjectionMLP

    return ProjectionMLP((encoder_dim, *dims))


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
        return cls(encoder, _projector(m.projector_dims, cfg.encoder.output_dim), m.temperature, m.fidelity)

    def training_step(self, views, step):
        _check_views(views)
        self.step = step
        zs = _one_pass(nn.Sequential(self.encoder, self.projector), views)
        if dist.is_distributed():
            gs, offset = _gather_views(zs), dist.rank() * zs[0].shape[0]
            loss, logs = _pairwise(len(zs), lambda i, j: nt_xent_loss(
                zs[i], zs[j], self.temperature, global_views=(gs[i], gs[j]), rank_offset=offset))
        else:
            loss, logs = _pairwise(len(zs), lambda i, j: nt_xent_loss(zs[i], zs[j], self.temperature))
        return loss, {"loss": loss.detach(), **logs}

    def schedule_state(self):
        return {"temperature": self.temperature}


# ----------------------------------------------------------------------------------- BYOL
class BYOL(Method):
    """BYOL (Grill et al. 2020, arXiv 2006.07733): student predictor, EMA teacher, no negatives.

    The teacher is an EMA copy of encoder + projector; the predictor sits on the student only
    and lives inside this module (hence inside the DDP wrapper). ``use_predictor=False`` removes
    it: the symmetric student/teacher pair then collapses (notebook 03).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module | None,
                 base_momentum: float = 0.996, total_steps: int = 1, steps_per_epoch: int = 1,
                 fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.predictor = predictor if predictor is not None else nn.Identity()
        self.use_predictor = predictor is not None
        self.teacher = _EMATeacher(encoder, projector)
        self.base_momentum = base_momentum
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "BYOL":
        from workbench.heads import Predictor

        m = cfg.method
        projector = _projector(m.projector_dims, cfg.encoder.output_dim)
        out = m.projector_dims[-1]
        predictor = Predictor(out, m.predictor_hidden) if m.use_predictor else None
        return cls(encoder, projector, predictor, m.ema_momentum, cfg.train.steps, cfg.train.steps_per_epoch,
                   m.fidelity)

    def momentum(self, step: int) -> float:
        return ema_momentum(step, self.total_steps, self.base_momentum, fidelity=self.fidelity,
                            steps_per_epoch=self.steps_per_epoch)

    def training_step(self, views, step):
        _check_views(views)
        self.step = step
        student = nn.Sequential(self.encoder, self.projector, self.predictor)
        ps = _one_pass(student, views)
        zs = _one_pass(self.teacher, views)
        pairs = [_loss_and_terms(byol_loss(ps[i], zs[j], fidelity=self.fidelity))
                 for i in range(len(views)) for j in range(len(views)) if i != j]
        loss, logs = _mean_over_pairs(pairs)
        return loss, {"loss": loss.detach(), **logs}

    def after_step(self, step: int) -> None:
        self.teacher.update(nn.Sequential(self.encoder, self.projector), self.momentum(step))

    def schedule_state(self):
        return {"momentum": self.momentum(self.step)}


# ----------------------------------------------------------------------------------- DINO
class DINO(Method):
    """DINO (Caron et al. 2021, arXiv 2104.14294), the paper's "clustering" task.

    Student and EMA teacher share the architecture backbone + `DINOHead`. The teacher's
    logits are centred (``DINOCenter``, momentum 0.9, all-reduced) and sharpened with a
    temperature warmed linearly from 0.02 to 0.04 over ``warmup_teacher_steps`` (10 epochs in
    the paper), then constant; student temperature 0.1. The loss averages every
    (teacher global view i, student view j != i) pair.

    Local crops (``n_local_crops > 0``): shorter segments (``local_crop_frames`` frames) cut at
    random from the global mel views and stretched back to the global frame count, as DINO
    resizes its local crops to a fixed size; this keeps one backbone pass for all views and the
    attention pool's positional embedding. Only the student sees them. Their randomness is
    seeded by (seed, step, rank) so a resumed run draws the same crops.
    ``use_centering=False`` disables centering (a deliberate collapse, notebook 03).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, n_prototypes: int, base_momentum: float = 0.996,
                 total_steps: int = 1, steps_per_epoch: int = 1, student_temp: float = 0.1,
                 teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.02, warmup_teacher_steps: int = 0,
                 center_momentum: float = 0.9, use_centering: bool = True, n_local_crops: int = 0,
                 local_crop_frames: int = 32, seed: int = 0, fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.head = head
        self.teacher = _EMATeacher(encoder, head)
        self.center = DINOCenter(n_prototypes, momentum=center_momentum)
        self.base_momentum = base_momentum
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
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
        from workbench.heads import DINOHead

        m = cfg.method
        # Release: Head(1024, [1024, 1024, 256, 4096]) = 1024 -> 1024 -> 1024 -> 256 -> 4096.
        head = DINOHead(cfg.encoder.output_dim, tuple(m.dino_hidden_dims), m.dino_bottleneck, m.n_prototypes,
                        form=m.fidelity)
        frames = max(1, round(cfg.audio.n_frames * m.local_crop_seconds / cfg.audio.segment_seconds))
        return cls(encoder, head, m.n_prototypes, m.ema_momentum, cfg.train.steps, cfg.train.steps_per_epoch,
                   m.student_temp, m.teacher_temp, m.warmup_teacher_temp,
                   m.warmup_teacher_temp_epochs * cfg.train.steps_per_epoch, m.center_momentum,
                   m.use_centering, m.n_local_crops, frames, cfg.train.seed, m.fidelity)

    def momentum(self, step: int) -> float:
        return ema_momentum(step, self.total_steps, self.base_momentum, fidelity=self.fidelity,
                            steps_per_epoch=self.steps_per_epoch)

    def teacher_temp(self, step: int) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``, then constant."""
        if step >= self.warmup_teacher_steps:
            return self.teacher_temp_final
        frac = step / self.warmup_teacher_steps
        return self.warmup_teacher_temp + frac * (self.teacher_temp_final - self.warmup_teacher_temp)

    def local_crops(self, views: list[Tensor], step: int) -> list[Tensor]:
        """``n_local_crops`` tensors (B, 1, F, T): random shorter segments, stretched to T frames."""
        B, _, n_mels, T = views[0].shape
        L = min(self.local_crop_frames, T)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 101 + dist.rank())
        crops = []
        for c in range(self.n_local_crops):
            src = views[c % len(views)]
            starts = torch.randint(0, T - L + 1, (B,), generator=g)
            idx = (starts[:, None] + torch.arange(L)[None, :]).to(src.device)  # (B, L)
            cut = torch.gather(src, 3, idx[:, None, None, :].expand(B, 1, n_mels, L))
            crops.append(F.interpolate(cut, size=(n_mels, T), mode="bilinear", align_corners=False))
        return crops

    def logits(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1, F, T) -> (student logits (B, K), teacher logits (B, K)), before temperatures."""
        return self.head(self.encoder(mel)), self.teacher(mel)

    def project(self, mel: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, bottleneck) student head output before the prototypes
        (paper-code head: its logits, as that head has no separate bottleneck output)."""
        h = self.encoder(mel)
        return self.head.mlp(h) if self.head.last_layer is not None else self.head(h)

    def training_step(self, views, step):
        _check_views(views)
        self.step = step
        globals_ = list(views)
        crops = globals_ + (self.local_crops(globals_, step) if self.n_local_crops else [])
        student = _one_pass(nn.Sequential(self.encoder, self.head), crops)
        teacher = _one_pass(self.teacher, globals_)
        center = self.center.center if self.use_centering else torch.zeros_like(self.center.center)
        t_temp = self.teacher_temp(step)
        pairs = [_loss_and_terms(dino_loss(student[j], teacher[i], center, self.student_temp, t_temp,
                                           fidelity=self.fidelity))
                 for i in range(len(teacher)) for j in range(len(student)) if i != j]
        loss, logs = _mean_over_pairs(pairs)
        if self.use_centering:
            self.center.update(torch.cat(teacher, dim=0))
        return loss, {"loss": loss.detach(), **logs}

    def after_step(self, step: int) -> None:
        self.teacher.update(nn.Sequential(self.encoder, self.head), self.momentum(step))

    def schedule_state(self):
        return {"momentum": self.momentum(self.step), "teacher_temp": self.teacher_temp(self.step),
                "student_temp": self.student_temp}


# ----------------------------------------------------------------------------------- VICReg
class VICReg(Method):
    """VICReg (Bardes et al. 2022, arXiv 2105.04906), the paper's "feature statistics" task.

    Variance and covariance are computed over the global batch (`gather_with_grad`).
    Coefficients None take the fidelity's values (reference 25 / 25 / 1, paper-code 1 / 1 / 1).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, inv_coeff: float | None = None,
                 var_coeff: float | None = None, cov_coeff: float | None = None, fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.coeffs = dict(inv_coeff=inv_coeff, var_coeff=var_coeff, cov_coeff=cov_coeff)

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "VICReg":
        m = cfg.method
        return cls(encoder, _projector(m.projector_dims, cfg.encoder.output_dim), m.inv_coeff, m.var_coeff,
                   m.cov_coeff, m.fidelity)

    def training_step(self, views, step):
        _check_views(views)
        self.step = step
        zs = _gather_views(_one_pass(nn.Sequential(self.encoder, self.projector), views))
        loss, logs = _pairwise(len(zs), lambda i, j: vicreg_loss(zs[i], zs[j], **self.coeffs, fidelity=self.fidelity))
        return loss, {"loss": loss.detach(), **logs}


# ----------------------------------------------------------------------------------- Barlow Twins
class BarlowTwins(Method):
    """Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): cross-correlation pushed to identity.

    The cross-correlation is standardised over the global batch (`gather_with_grad`).
    ``lambd`` None takes the fidelity's value (reference 5e-3, paper-code 1.0 on means).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, lambd: float | None = None,
                 fidelity: str = "reference"):
        super().__init__(encoder, fidelity)
        self.projector = projector
        self.lambd = lambd

    @classmethod
    def from_config(cls, encoder: nn.Module, cfg: RunConfig) -> "BarlowTwins":
        m = cfg.method
        return cls(encoder, _projector(m.projector_dims, cfg.encoder.output_dim), m.lambd, m.fidelity)

    def training_step(self, views, step):
        _check_views(views)
        self.step = step
        zs = _gather_views(_one_pass(nn.Sequential(self.encoder, self.projector), views))
        loss, logs = _pairwise(len(zs), lambda i, j: barlow_twins_loss(zs[i], zs[j], self.lambd,
                                                                        fidelity=self.fidelity))
        return loss, {"loss": loss.detach(), **logs}


METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "byol": BYOL,
    "dino": DINO,
    "vicreg": VICReg,
    "barlow_twins": BarlowTwins,
}


def build_method(cfg: RunConfig) -> Method:
    """The method named by ``cfg.method.name`` with a fresh encoder (`build_encoder`)."""
    from workbench.encoder import build_encoder

    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    torch.manual_seed(cfg.train.seed)  # same initial weights for the same config
    return METHODS[name].from_config(build_encoder(cfg.encoder, cfg.audio), cfg)
