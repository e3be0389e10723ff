"""Runs launched with ``torchrun``: the process group, and work split into chunks across ranks.

Single-process runs need nothing from here (every helper is then a plain loop or a no-op).
Under ``torchrun --nproc_per_node N`` the environment carries ``RANK``/``WORLD_SIZE``;
:func:`init_distributed` then joins the process group (NCCL on CUDA, gloo on CPU). Training
uses DDP; sampling and evaluation split their work with :func:`map_chunks` (chunk ``k`` goes
to rank ``k mod N``), so every chunk is computed exactly as one process would compute it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


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
    """Join the process group when launched by ``torchrun``; a no-op otherwise.

    :param device: this process's device (``resolve_device(..., local_rank())``); a CUDA device
        becomes the current one, as NCCL's collectives expect.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def leave_process_group() -> None:
    """Leave the process group joined by :func:`init_distributed` (a no-op when none was joined).

    A rank that exits while still holding a gloo group can abort in the group's destructor
    ("terminate called without an active exception") when it finishes before the others, as
    the non-main ranks of ``sample``, ``evaluate`` and ``inpaint`` do. Leaving is local: it
    does not wait for the other ranks.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_rank() -> int:
    """``LOCAL_RANK`` from ``torchrun``, 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.world_size > 1:
        dist.barrier()


def broadcast_from_main(value: T, info: DistInfo) -> T:
    """Rank 0's ``value`` on every rank (picklable values; the others' are ignored).

    Also a barrier: no rank returns before rank 0 has called it.
    """
    if info.world_size == 1:
        return value
    box = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def my_share(items: list[T], info: DistInfo) -> list[T]:
    """The items this rank works on: ``items[rank::world_size]`` (all of them in a single process)."""
    return items[info.rank::info.world_size]


def map_chunks(fn: Callable[[int, int], T], n_items: int, chunk_size: int, info: DistInfo) -> list[T]:
    """``fn(start, stop)`` for every chunk ``[start, stop)`` of ``range(n_items)``, in chunk order.

    Chunk ``k`` is ``[k·chunk_size, min((k+1)·chunk_size, n_items))``, computed by rank ``k mod N``;
    every rank gets every chunk's result. ``fn`` must return picklable CPU values (tensors on
    the CPU) and depend only on its chunk, so the results equal those of one process.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    bounds = [(start, min(start + chunk_size, n_items)) for start in range(0, n_items, chunk_size)]
    if info.world_size == 1:
        return [fn(start, stop) for start, stop in bounds]
    mine = {k: fn(*bounds[k]) for k in my_share(list(range(len(bounds))), info)}
    parts: list[dict[int, T] | None] = [None] * info.world_size
    dist.all_gather_object(parts, mine)
    done = {k: v for part in parts for k, v in (part or {}).items()}
    return [done[k] for k in range(len(bounds))]
