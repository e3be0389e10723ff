"""PyTorch DDP set-up for runs launched with ``torchrun`` (the device: ``ncsn.devices``).

Single-process runs need nothing from here. Under
``torchrun --nproc_per_node N`` the environment carries ``RANK``/``WORLD_SIZE``;
``init_distributed`` then joins the process group (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly 1-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun``; a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_rank() -> int:
    """``LOCAL_RANK`` from ``torchrun``, 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.world_size > 1:
        dist.barrier()
