"""Statistics of a prepared training split, written to ``stats.json``.

* per-channel mean and standard deviation, in the model's [0, 1] pixel space;
* NCSNv2 technique 1: σ₁ ≈ the largest Euclidean distance between two training points;
* NCSNv2 technique 2: the number of levels L from that σ₁ down to σ_L for D = C·H·W;
* :func:`resolve_sigmas`: the run's schedule from ``model.*``, taking its ``auto`` values
  from these statistics.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ncsn.config import ModelConfig

_CHUNK = 1024


def to_unit_range(data: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 pixels → ``dtype`` values in [0, 1]; float data (gmm points) → ``dtype`` unchanged."""
    return data.to(dtype) / 255.0 if data.dtype == torch.uint8 else data.to(dtype)


def channel_mean_std(data: Tensor) -> tuple[list[float], list[float]]:
    """Mean and (population) standard deviation of each channel, accumulated in float64.

    :param data: uint8 [N, C, H, W] images (taken in [0, 1]) or float [N, D] points (per dimension).
    :return: two lists of C (or D) floats.
    """
    reduce_dims = (0, 2, 3) if data.ndim == 4 else (0,)
    total = torch.zeros(data.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, data.shape[0], _CHUNK):
        chunk = to_unit_range(data[start:start + _CHUNK], torch.float64)
        total += chunk.sum(reduce_dims)
        total_sq += chunk.pow(2).sum(reduce_dims)
    count = data.numel() // data.shape[1]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def sigma_begin_suggestion(data: Tensor, device: torch.device | str = "cpu") -> float:
    """NCSNv2 technique 1: max_{j,k} ‖x_j − x_k‖₂ over every training example, in [0, 1] pixel space.

    :param data: [N, ...] the training split (uint8 images or float points).
    :param device: where the O(N²·D) distance computation runs.
    """
    from ncsn.core.sigmas import max_pairwise_distance

    return max_pairwise_distance(to_unit_range(data).to(device), chunk_size=_CHUNK)


def num_levels_suggestion(dim: int, sigma_begin: float, sigma_end: float) -> int | None:
    """NCSNv2 technique 2: L for D = ``dim`` from ``sigma_begin`` to ``sigma_end``.

    :return: L, or None where the technique has no answer (σ₁ ≤ σ_L, or D so small that
        no ratio gives the target overlap, as for the 2-D toy data).
    """
    from ncsn.core.sigmas import num_levels_for_dim

    try:
        return num_levels_for_dim(dim, sigma_begin, sigma_end)
    except ValueError:
        return None


def resolve_sigmas(model_cfg: ModelConfig, stats: dict[str, Any]) -> Tensor:
    """The run's geometric schedule from ``model.sigma_begin``, ``sigma_end`` and ``num_levels``.

    ``sigma_begin: auto`` takes ``stats["sigma_begin_suggestion"]`` (technique 1). ``num_levels:
    auto`` takes ``stats["num_levels_suggestion"]`` when σ₁ is that suggestion too (the prepare
    stage computed L for it and ``model.sigma_end``), and technique 2 for a σ₁ given as a number.

    :param stats: the prepare stage's ``stats.json``.
    :return: [L] descending noise levels, float32.
    :raises ConfigError: when ``num_levels: auto`` has no answer (e.g. 2-D data).
    """
    from ncsn.config import ConfigError
    from ncsn.core.sigmas import geometric_sigmas, num_levels_for_dim

    sigma_begin = stats["sigma_begin_suggestion"] if model_cfg.sigma_begin == "auto" else model_cfg.sigma_begin
    if model_cfg.num_levels != "auto":
        num_levels = model_cfg.num_levels
    elif model_cfg.sigma_begin == "auto" and stats.get("sigma_end") == model_cfg.sigma_end:
        num_levels = stats.get("num_levels_suggestion")
    else:
        try:
            num_levels = num_levels_for_dim(math.prod(stats["shape"]), float(sigma_begin), model_cfg.sigma_end)
        except ValueError:
            num_levels = None
    if num_levels is None:
        raise ConfigError(f"'model.num_levels' = 'auto' has no answer for data of shape {stats['shape']} from"
                          f" sigma {sigma_begin} to {model_cfg.sigma_end} (NCSNv2 technique 2); set a number.")
    return geometric_sigmas(float(sigma_begin), model_cfg.sigma_end, int(num_levels))
