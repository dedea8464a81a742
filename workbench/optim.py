"""Optimisers and the learning-rate schedule of pretraining.

`build_optimizer`: AdamW or LARS, weight decay only on parameters with two or more dimensions
(nanoGPT); `learning_rate`: linear warm-up then cosine decay to 0; `set_learning_rate` applies it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step <= warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as in the BYOL / Barlow Twins recipes: SGD with momentum whose
    update of each matrix is scaled by the trust ratio ||w|| / ||g + wd w||; vectors (biases,
    norms) get neither weight decay nor adaptation (their group has ``weight_decay=0``)."""

    def __init__(self, params, lr: float = 0.1, weight_decay: float = 0.0, momentum: float = 0.9,
                 eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim >= 2:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))
                    d = d.mul(trust)
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])


def build_optimizer(method: nn.Module, optimizer: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or LARS; weight decay only on parameters with two or more dimensions (nanoGPT)."""
    params = [p for p in method.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizers = {"adamw": lambda: torch.optim.AdamW(groups, lr=lr),
                  "lars": lambda: LARS(groups, lr=lr)}
    if optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(optimizers)}")
    return optimizers[optimizer]()


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
