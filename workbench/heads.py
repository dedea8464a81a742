"""Heads on top of the backbone: projection MLP, BYOL predictor, DINO head (two forms).

Sizes follow the released code of Meseguer-Brocal et al. (ICASSP 2024,
deezer/multi-view-ssl-benchmark, ``ssl_framework/models/__init__.Head`` and
``selfsupervised_models.py``): projector 1024 -> 1024 -> 1024 -> 2048 (``head_feature_dim``
[1024, 1024, 2048] after the 1024-d backbone), BYOL predictor 2048 -> 256 -> 2048, DINO head
1024 -> 1024 -> 1024 -> 256 -> 4096.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class ProjectionMLP(nn.Sequential):
    """(B, dims[0]) -> (B, dims[-1]): [Linear(bias=False), BatchNorm1d, ReLU] per hidden layer, then Linear.

    ``dims`` includes the input size: the paper's projector is ``ProjectionMLP((1024, 1024,
    1024, 2048))`` (the release's ``Head(feature_dim=1024, layers_feature_dim=[1024, 1024,
    2048])``). The last layer is a Linear without bias and without BatchNorm, as in the
    release (SimCLR's and Barlow Twins' reference projectors also end on a bare Linear).
    """

    def __init__(self, dims: Sequence[int]):
        dims = tuple(int(d) for d in dims)
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"ProjectionMLP needs at least (in_dim, out_dim), all positive, got {dims}")
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
        super().__init__(*layers)
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dims[0]:
            raise ValueError(f"{type(self).__name__} expects (B, {self.dims[0]}), got {tuple(x.shape)}")
        return super().forward(x)


class Predictor(ProjectionMLP):
    """BYOL's predictor on the student's projection: (B, dim) -> (B, dim) through ``hidden``.

    Grill et al. 2020 use 4096 hidden units, 16 times the 256-d projection (fidelity reference:
    ``method.predictor_hidden`` None); the paper's release uses a bottleneck 2048 -> 256 -> 2048
    (``predictor_feature_dim=[256, 2048]``, fidelity paper-code), same layer types as the projector.
    """

    def __init__(self, dim: int = 2048, hidden: int = 256):
        super().__init__((dim, hidden, dim))


DINO_HEAD_FORMS = ("reference", "paper-code")


class DINOHead(nn.Module):
    """DINO's projection head: (B, in_dim) -> (B, n_prototypes) logits.

    - form="reference" (Caron et al. 2021, facebookresearch/dino ``vision_transformer.DINOHead``):
      MLP in_dim -> hidden_dims... -> bottleneck_dim with GELU and no BatchNorm, then the
      bottleneck is L2-normalised and a weight-normalised Linear without bias (its norm
      ``g`` fixed to 1, not trained: ``norm_last_layer=True``) gives the logits; Linear weights
      truncated-normal std 0.02, biases 0. The logits are cosines to K unit prototypes, so
      they are bounded by 1 and the temperatures set the sharpness.
    - form="paper-code" (docs/paper.md 4): the release's plain ``Head``, i.e.
      ``ProjectionMLP((in_dim, *hidden_dims, bottleneck_dim, n_prototypes))``: Linear without
      bias + BatchNorm + ReLU up to the bottleneck, a bare Linear to the prototypes; no
      normalisation, so the logits are unbounded.

    The fixed norm of the reference form is the parametrisation's ``original0``
    (requires_grad False): build the optimiser from parameters with ``requires_grad``.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int] = (1024, 1024), bottleneck_dim: int = 256,
                 n_prototypes: int = 4096, form: str = "reference"):
        super().__init__()
        if form not in DINO_HEAD_FORMS:
            raise ValueError(f"unknown DINOHead form {form!r}; expected one of {', '.join(DINO_HEAD_FORMS)}")
        self.form = form
        self.in_dim, self.n_prototypes = int(in_dim), int(n_prototypes)
        dims = (int(in_dim), *(int(h) for h in hidden_dims), int(bottleneck_dim))
        if form == "paper-code":
            self.mlp = ProjectionMLP((*dims, n_prototypes))
            self.last_layer = None
            return
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.GELU()]
        self.mlp = nn.Sequential(*layers[:-1])  # no activation after the bottleneck
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, n_prototypes, bias=False))
        g = self.last_layer.parametrizations.weight.original0  # (K, 1) norms
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"DINOHead expects (B, {self.in_dim}), got {tuple(x.shape)}")
        if self.last_layer is None:
            return self.mlp(x)
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))

    def extra_repr(self) -> str:
        return f"form={self.form!r}"


class EMATeacher(nn.Module):
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


def head_parameters(method: nn.Module) -> int:
    """Trainable parameters of a method outside its encoder: its projector, predictor or DINO
    head (a teacher's EMA copy is not trained), reported beside each run's results."""
    return sum(p.numel() for name, p in method.named_parameters()
               if p.requires_grad and not name.startswith("encoder."))
