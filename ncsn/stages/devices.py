"""Where the tensors live: the device an entry point picks, whether bf16 is fast there, and how
many CPU cores this process may use.

Library code follows its tensors (``x.device``); only stage entry points call
:func:`resolve_device`.
"""

from __future__ import annotations

import os

import torch


def usable_cpus() -> int:
    """Cores this process may run on: its affinity where the OS reports one (taskset, containers), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``base.device`` → a device: ``auto`` is CUDA when available, else CPU.

    :param local_rank: the CUDA device index of this process (``torchrun``'s ``LOCAL_RANK``).
    :raises RuntimeError: for ``cuda`` without a GPU.
    """
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
