"""Distributed data parallel under ``torchrun``: the same command trains with N processes.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; a process
that sees ``WORLD_SIZE > 1`` joins the process group (gloo for CPU, nccl for CUDA). Each rank
trains on its ``1/N`` share of every global batch (``DistributedSampler``), DDP averages the
gradients, so a step equals a one-process step on the whole global batch (up to float
rounding and per-rank batch-norm statistics). Only rank 0 writes files.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` and its ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self):
        """True on the one process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def world_size_from_env():
    """``WORLD_SIZE`` as set by torchrun (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def context(device):
    """Join the torchrun process group when ``WORLD_SIZE > 1`` and return this rank's context.

    ``device`` is the requested device; under torchrun a CUDA request becomes
    ``cuda:LOCAL_RANK``. Idempotent: a second call reuses the group.
    """
    device = torch.device(device)
    world_size = world_size_from_env()
    if world_size == 1:
        return DistContext(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def all_reduce_sum(tensor, ctx):
    """Sum ``tensor`` over all ranks in place (a no-op on one process); returns it."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx):
    """Wait for every rank (a no-op on one process)."""
    if ctx.distributed:
        dist.barrier()


def shutdown():
    """Leave the process group if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
