"""Sliced score matching, variance-reduced form (Song, Garg, Shi & Ermon, 2019).

Score matching minimises J(θ) = E_x[½‖s_θ(x)‖² + tr ∇ₓ s_θ(x)]. Slicing replaces the
trace with E_v[vᵀ ∇ₓ(vᵀ s_θ(x))] for projections v with E[v vᵀ] = I (Gaussian or
Rademacher); the variance-reduced form keeps ½‖s_θ(x)‖² exact instead of ½(vᵀs_θ)².
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, rand_like, randint, randn_like


def _projections(x: Tensor, n_projections: int, projection: str, generator: GeneratorLike) -> Tensor:
    """[P·B, ...] projection vectors, projection-major (rows p·B .. p·B + B − 1 for draw p)."""
    if projection == "gaussian":
        draws = [randn_like(x, generator) for _ in range(n_projections)]
    elif projection == "rademacher":
        draws = [torch.where(rand_like(x, generator) < 0.5, -1.0, 1.0).to(x.dtype) for _ in range(n_projections)]
    else:
        raise ValueError(f"projection must be 'gaussian' or 'rademacher', got {projection!r}")
    return torch.cat(draws)


def ssm_loss(score_fn: Callable[[Tensor], Tensor], x: Tensor, *, n_projections: int = 1,
             projection: str = "gaussian", generator: GeneratorLike = None) -> Tensor:
    """Per-example ½‖s(x)‖² + (1/P) Σ_p v_pᵀ ∇ₓ(v_pᵀ s(x)), an unbiased estimate of J.

    The gradient graph is kept (``create_graph=True``), so the result trains s; it runs
    under ``torch.enable_grad()`` even when called inside ``no_grad``.

    :param score_fn: s(x [N, ...]) → [N, ...], no level argument.
    :param x: [B, ...] data.
    :param n_projections: P, projections per example.
    :param projection: ``"gaussian"`` (v ~ N(0, I)) or ``"rademacher"`` (v ∈ {±1}^D).
    :param generator: None, a ``torch.Generator``, or B per-example generators (ncsn.core.rng).
    :return: [B] loss per example.
    """
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    batch = x.shape[0]
    v = _projections(x, n_projections, projection, generator)  # [P·B, ...]
    with torch.enable_grad():
        x_rep = x.detach().repeat(n_projections, *([1] * (x.ndim - 1))).requires_grad_(True)  # [P·B, ...]
        s = score_fn(x_rep)
        (grad_vs,) = torch.autograd.grad((s * v).sum(), x_rep, create_graph=True)  # ∇ₓ(vᵀs) per row
        norm_term = 0.5 * s.pow(2).flatten(1).sum(1)
        trace_term = (v * grad_vs).flatten(1).sum(1)
    return (norm_term + trace_term).reshape(n_projections, batch).mean(0)


def annealed_ssm_loss(score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigmas: Tensor, *,
                      anneal_power: float = 2.0, levels: Tensor | None = None, n_projections: int = 1,
                      projection: str = "gaussian", generator: GeneratorLike = None) -> Tensor:
    """Per-example σ_i^p · SSM loss of s(·, i) at x̃ = x + σ_i z, i uniform per example.

    Random draws, in order: the levels (when ``levels`` is None), z, then the projections.

    :param score_fn: s(x̃ [N, ...], levels [N]) → [N, ...].
    :param x: [B, ...] clean data.
    :param sigmas: [L] noise levels.
    :param anneal_power: p in the weight σ^p.
    :param levels: [B] int64 level indices; uniform per example when None.
    :return: [B] loss per example.
    """
    if levels is None:
        levels = randint(len(sigmas), x.shape[0], generator, device=x.device)
    sigma = sigmas.to(device=x.device, dtype=x.dtype)[levels].reshape(-1, *([1] * (x.ndim - 1)))  # [B, 1, ...]
    x_tilde = x.detach() + sigma * randn_like(x, generator)
    rep_levels = levels.repeat(n_projections)  # matches the projection-major rows of ssm_loss
    loss = ssm_loss(lambda y: score_fn(y, rep_levels), x_tilde, n_projections=n_projections,
                    projection=projection, generator=generator)
    return loss * sigma.flatten().pow(anneal_power)
