"""Annealed denoising score matching (paper Eq. 5–6).

For one level: ℓ(θ; σ) = ½ E_x E_{x̃ ~ N(x, σ²I)} ‖s_θ(x̃, σ) + (x̃ − x)/σ²‖².
Total: (1/L) Σ_i λ(σ_i) ℓ(θ; σ_i) with λ(σ) = σ^anneal_power (paper: σ²), estimated
with one level index drawn uniformly per example (:func:`dsm_loss`), or at any σ per example
(:func:`dsm_loss_sigma`, which holds the equation).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, randint, randn_like

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def dsm_loss(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, *, anneal_power: float = 2.0,
             levels: Tensor | None = None, noise: Tensor | None = None,
             generator: GeneratorLike = None) -> Tensor:
    """Per-example annealed DSM loss ½ σ_i^p ‖s(x̃, i) + (x̃ − x)/σ_i²‖², x̃ = x + σ_i z.

    Random draws, in order: the levels (when ``levels`` is None), then z (when ``noise``
    is None), both from ``generator``.

    :param score_fn: s(x̃ [B, ...], levels [B]) → [B, ...], a network or an exact score.
    :param x: [B, ...] clean data.
    :param sigmas: [L] noise levels.
    :param anneal_power: p in λ(σ) = σ^p.
    :param levels: [B] int64 level indices i; uniform on {0..L−1} per example when None.
    :param noise: [B, ...] the standard normal z; drawn when None.
    :param generator: None, a ``torch.Generator``, or B per-example generators (ncsn.core.rng).
    :return: [B] loss per example, summed over the non-batch dimensions.
    """
    if levels is None:
        levels = randint(len(sigmas), x.shape[0], generator, device=x.device)
    sigma = sigmas.to(device=x.device, dtype=x.dtype)[levels]
    return dsm_loss_sigma(lambda x_tilde, _: score_fn(x_tilde, levels), x, sigma, anneal_power=anneal_power,
                          noise=noise, generator=generator)


def dsm_loss_sigma(score_fn: ScoreFn, x: Tensor, sigma: Tensor, *, anneal_power: float = 2.0,
                   noise: Tensor | None = None, generator: GeneratorLike = None) -> Tensor:
    """Per-example DSM loss at any σ: ½ σ^p ‖s(x̃, σ) + (x̃ − x)/σ²‖², x̃ = x + σ z (paper Eq. 5, one σ per example).

    :param score_fn: s(x̃ [B, ...], sigma [B]) → [B, ...] (a network's ``forward_sigma``, or :func:`dsm_loss`'s
        levels).
    :param x: [B, ...] clean data.
    :param sigma: [B] noise levels, > 0.
    :param noise: [B, ...] the standard normal z; drawn from ``generator`` when None.
    :return: [B] loss per example, summed over the non-batch dimensions.
    """
    if noise is not None and noise.shape != x.shape:
        raise ValueError(f"noise of shape {tuple(noise.shape)} does not match x of shape {tuple(x.shape)}")
    z = randn_like(x, generator) if noise is None else noise
    sigma_b = sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))  # [B, 1, ...]
    x_tilde = x + sigma_b * z
    target = -z / sigma_b  # = −(x̃ − x)/σ², the score of N(x̃; x, σ²I)
    residual = score_fn(x_tilde, sigma).to(x.dtype) - target
    return 0.5 * residual.pow(2).flatten(1).sum(1) * sigma.to(x.dtype).pow(anneal_power)


def dsm_loss_at(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, level: int, *, anneal_power: float = 2.0,
                generator: GeneratorLike = None) -> Tensor:
    """:func:`dsm_loss` with every example at level ``level`` (per-level validation loss).

    :param level: the index i in {0..L−1}.
    :return: [B] loss per example, weighted by σ_i^anneal_power.
    """
    levels = torch.full((x.shape[0],), level, dtype=torch.long, device=x.device)
    return dsm_loss(score_fn, x, sigmas, anneal_power=anneal_power, levels=levels, generator=generator)
