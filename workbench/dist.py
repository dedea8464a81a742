"""Everything distributed, in one place, off by default.

Without a process group every function here is the identity (or a constant), so the rest of
the package never branches on "am I distributed". `torchrun --nproc_per_node=N -m workbench
pretrain ...` sets the usual environment variables; `init_from_env()` reads them.

Gradient rule (lightly's two DDP bugs were both here): `gather_with_grad` gathers the (B, D)
embeddings of every rank and, on the way back, *sums* the incoming gradients of all ranks
before keeping the local slice. With DistributedDataParallel averaging parameter gradients
over the W ranks, this gives exactly the gradient of one process on the global batch, whether
each rank computes the loss on the whole gathered batch (VICReg, Barlow Twins statistics,
NT-Xent here) or only on its local rows. tests/test_dist.py checks it for every method.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or no process group): the process that writes files and shows progress bars."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(device: str = "auto") -> bool:
    """Create the default process group from torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR...).

    Returns False (and does nothing) when the variables are absent or WORLD_SIZE is 1.
    Backend: nccl when training on CUDA, gloo on CPU.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward = all-reduce(sum) of the gathered gradient, local slice.

    Written out (rather than torch.distributed.nn.functional.all_gather) because that one's
    backward uses reduce_scatter, which gloo does not provide.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.batch = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()  # a fresh tensor: the in-place all_reduce touches no autograd value
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start:start + ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """(B, ...) local rows -> (W*B, ...) rows of every rank in rank order, differentiable.

    Identity without a process group. Every rank must pass the same shape.
    """
    if not is_distributed() or world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def _all_reduce(x: Tensor, op) -> Tensor:
    """``op`` of ``x`` over ranks (a new tensor, no gradient); ``x`` itself without a group."""
    if not is_distributed() or world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=op)
    return y


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks (a new tensor, no gradient); ``x`` itself without a group."""
    return _all_reduce(x, dist.ReduceOp.SUM)


def all_reduce_max(x: Tensor) -> Tensor:
    """Maximum of ``x`` over ranks (a new tensor, no gradient); ``x`` itself without a group."""
    return _all_reduce(x, dist.ReduceOp.MAX)


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over ranks (a new tensor, no gradient); ``x`` itself without a group."""
    if not is_distributed() or world_size() == 1:
        return x
    return all_reduce_sum(x) / world_size()


def gather_objects(obj) -> list:
    """Every rank's Python object, in rank order (``[obj]`` without a group)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` under torchrun (``module`` itself otherwise).

    On CUDA, BatchNorm becomes SyncBatchNorm (global-batch statistics, as one process); gloo
    on CPU has no SyncBatchNorm, so statistics are per rank there (tests/test_dist.py compares
    with exactly those semantics)."""
    if not is_distributed():
        return module
    if device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
