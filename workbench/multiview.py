"""The view layout every method shares: V views as a list of (B, ...) tensors.

`check_views` asserts the layout (V >= 2 mel views (B, 1, F, T) of one shape); `one_pass` runs
a module once over all views (``torch.cat`` on the batch axis, then split), optionally with
BatchNorm statistics per view (`per_view_statistics`, ghost batches); `gather_views` gathers the
views of every rank with one collective; `pairwise` and `mean_over_pairs` average a loss over
view pairs, as the release averages V > 2 views; `local_crops` cuts DINO's local views.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench import dist
from workbench.losses import Terms


def check_views(views: list[Tensor], min_views: int = 2) -> None:
    if not isinstance(views, (list, tuple)) or len(views) < min_views:
        raise ValueError(f"expected a list of at least {min_views} views, got {type(views).__name__} "
                         f"of length {len(views) if isinstance(views, (list, tuple)) else '-'}")
    shape = views[0].shape
    for v in views:
        if v.dim() != 4 or v.shape[1] != 1 or v.shape != shape:
            raise ValueError(f"views must be (B, 1, F, T) tensors of one shape; got "
                             f"{[tuple(u.shape) for u in views]}")


def one_pass(module: nn.Module, views: list[Tensor], per_view: bool = False) -> list[Tensor]:
    """V tensors (B, ...) -> module(cat) split back into V tensors (B, ...): one forward pass.
    ``per_view``: BatchNorm statistics per view (`per_view_statistics`), as V passes would give."""
    x = torch.cat(list(views), dim=0)
    with per_view_statistics(module, len(views)) if per_view and module.training else nullcontext():
        out = module(x)
    return list(out.split(views[0].shape[0], dim=0))


def _chunked(forward: Callable[[Tensor], Tensor], n_views: int, x: Tensor) -> Tensor:
    return torch.cat([forward(chunk) for chunk in x.chunk(n_views, dim=0)], dim=0)


@contextmanager
def per_view_statistics(module: nn.Module, n_views: int) -> Iterator[None]:
    """Inside, every BatchNorm of ``module`` normalises each view's rows (the V contiguous
    chunks of a one-pass batch) with that view's own statistics, and updates its running
    statistics once per view: what V separate passes give (BYOL's reference code applies the
    network once per view, VICReg's and Barlow Twins' call the backbone on each view, and so does
    the release), while the convolutions still run once on the whole batch (ghost batches)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.__dict__.get("forward") for m in norms]  # a forward patched by someone else stays
    for m in norms:
        m.forward = functools.partial(_chunked, m.forward, n_views)
    try:
        yield
    finally:
        for m, forward in zip(norms, saved):
            if forward is None:
                del m.forward
            else:
                m.forward = forward


def gather_views(zs: list[Tensor]) -> list[Tensor]:
    """V local (B, D) -> V global (W*B, D) with one collective (rows stay aligned across views)."""
    if not dist.is_distributed():
        return zs
    stacked = dist.gather_with_grad(torch.stack(zs, dim=1))  # (W*B, V, D)
    return list(stacked.unbind(dim=1))


def mean_over_pairs(results: list[tuple[Tensor, Terms]]) -> tuple[Tensor, Terms]:
    """Mean loss and mean terms of per-pair results."""
    loss = torch.stack([r[0] for r in results]).mean()
    terms = {k: torch.stack([r[1][k].detach().float() for r in results]).mean() for k in results[0][1]}
    return loss, terms


def pairwise(n_views: int, loss_fn: Callable[[int, int], tuple[Tensor, Terms]]) -> tuple[Tensor, Terms]:
    """``loss_fn(i, j)`` averaged over the V(V-1)/2 view pairs i < j, as the release averages
    V > 2 views; returns (loss, detached mean terms)."""
    return mean_over_pairs([loss_fn(i, j) for i in range(n_views) for j in range(i + 1, n_views)])


def local_crops(views: list[Tensor], n_crops: int, frames: int, seed: int) -> list[Tensor]:
    """``n_crops`` tensors (B, 1, F, T): random ``frames``-long segments of the views (crop c from
    view c mod V), stretched back to T frames, as DINO resizes its local crops to a fixed size
    (one backbone pass for all views, the attention pool's positional embedding kept). Drawn for
    the global batch with ``seed`` and sliced per rank, as the views are: a 2-process run crops
    what one process would, and a resumed run the same as an uninterrupted one."""
    B, _, n_mels, T = views[0].shape
    L = min(frames, T)
    g = torch.Generator().manual_seed(seed)
    mine = slice(dist.rank() * B, (dist.rank() + 1) * B)
    crops = []
    for c in range(n_crops):
        src = views[c % len(views)]
        starts = torch.randint(0, T - L + 1, (B * dist.world_size(),), generator=g)[mine]
        idx = (starts[:, None] + torch.arange(L)[None, :]).to(src.device)  # (B, L)
        cut = torch.gather(src, 3, idx[:, None, None, :].expand(B, 1, n_mels, L))
        crops.append(F.interpolate(cut, size=(n_mels, T), mode="bilinear", align_corners=False))
    return crops
