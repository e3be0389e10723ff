"""Device choice and PyTorch DDP set-up for runs launched with ``torchrun``.

Single-process runs need nothing from here but ``resolve_device``. Under
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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("base.device is 'cuda' but no CUDA device is available; set base.device: auto or cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def bf16_slow_reason(device: torch.device | str) -> str | None:
    """Why bf16 autocast would be slower than float32 on ``device``, or None when it is fast.

    On a CPU without native bf16 arithmetic (AVX-512 BF16 or AMX) oneDNN emulates it:
    sampling with ``sample.bf16`` ran about 6x slower than float32 on such a CPU (AVX2).
    """
    device = torch.device(device)
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        capability = torch.backends.cpu.get_cpu_capability()
        return (f"this CPU has no native bf16 (AVX-512 BF16 or AMX; torch sees {capability}):"
                " bf16 autocast runs slower than float32 here")
    return None


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
