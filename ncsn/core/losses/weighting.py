"""The training objective's weighting over the noise levels (``train.weighting``).

* ``"paper"``: levels uniform on {0..L−1}, λ(σ) = σ^anneal_power (paper Eq. 6).
* ``"edm"``: levels drawn by a log-normal density of σ (``train.log_sigma_mean``,
  ``train.log_sigma_std``), λ(σ) = σ²·(σ² + σ_d²)/σ_d² (``ncsn.core.losses.edm``).

``train.sigma_sampling`` (:data:`SIGMA_SAMPLINGS`): ``"levels"`` draws level indices
(:func:`draw_levels`); ``"continuous"`` draws any σ in [σ_L, σ_1] (:func:`draw_sigmas`: log-uniform
for ``"paper"``, the log-normal truncated to that range for ``"edm"``), so that a solver of the
probability-flow ODE meets no σ the network has not been trained on.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ncsn.core.losses.dsm import ScoreFn, dsm_loss, dsm_loss_sigma
from ncsn.core.losses.edm import edm_level_probs, edm_loss_weight

WEIGHTINGS = ("paper", "edm")
SIGMA_SAMPLINGS = ("levels", "continuous")


def draw_levels(weighting: str, sigmas: Tensor, n: int, generator: torch.Generator, *,
                log_sigma_mean: float | None = None, log_sigma_std: float | None = None) -> Tensor:
    """n level indices for one training batch.

    :param sigmas: [L] noise levels, on the device the indices go to (``generator``'s).
    :param log_sigma_mean: / :param log_sigma_std: ``"edm"``'s P_mean and P_std (of ln σ), required by it.
    :return: [n] int64 in 0..L−1.
    """
    if weighting == "edm":
        if log_sigma_mean is None or log_sigma_std is None:
            raise ValueError("weighting 'edm' needs log_sigma_mean and log_sigma_std")
        probs = edm_level_probs(sigmas, log_sigma_mean, log_sigma_std)
        return torch.multinomial(probs, n, replacement=True, generator=generator)
    if weighting == "paper":
        return torch.randint(0, len(sigmas), (n,), generator=generator, device=sigmas.device)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def weighted_dsm_loss(score_fn: ScoreFn, x: Tensor, sigmas: Tensor, *, weighting: str, anneal_power: float,
                      levels: Tensor, noise: Tensor) -> Tensor:
    """The per-example DSM loss (``ncsn.core.losses.dsm``) with ``weighting``'s λ(σ).

    :param x: [B, ...] clean data; ``levels`` [B] and ``noise`` [B, ...] as :func:`draw_levels` and N(0, I) give.
    :return: [B] loss per example.
    """
    loss = dsm_loss(score_fn, x, sigmas, anneal_power=anneal_power, levels=levels, noise=noise)
    if weighting == "edm":
        loss = loss * edm_loss_weight(sigmas.to(loss.dtype)[levels])
    return loss


def draw_sigmas(weighting: str, sigma_min: float, sigma_max: float, n: int, generator: torch.Generator, *,
                log_sigma_mean: float | None = None, log_sigma_std: float | None = None,
                device: torch.device | str = "cpu") -> Tensor:
    """n noise levels in [σ_min, σ_max] for one training batch (``train.sigma_sampling: continuous``).

    * ``"paper"``: ln σ ~ U[ln σ_min, ln σ_max] (the geometric levels' density, made continuous);
    * ``"edm"``: ln σ ~ N(P_mean, P_std²) truncated to [ln σ_min, ln σ_max], drawn by the inverse CDF:
      ln σ = P_mean + P_std Φ⁻¹(Φ(a) + u (Φ(b) − Φ(a))), u ~ U[0, 1).

    :param generator: on ``device``. :return: [n] float32 on ``device``.
    """
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    if weighting == "paper":
        return (lo + u * (hi - lo)).exp().float()
    if weighting == "edm":
        if log_sigma_mean is None or log_sigma_std is None:
            raise ValueError("weighting 'edm' needs log_sigma_mean and log_sigma_std")
        a, b = (torch.tensor((v - log_sigma_mean) / log_sigma_std, dtype=torch.float64) for v in (lo, hi))
        p = torch.special.ndtr(a) + u * (torch.special.ndtr(b) - torch.special.ndtr(a))
        return (log_sigma_mean + log_sigma_std * torch.special.ndtri(p)).clamp(lo, hi).exp().float()
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def weighted_dsm_loss_sigma(score_fn: ScoreFn, x: Tensor, sigma: Tensor, *, weighting: str, anneal_power: float,
                            noise: Tensor) -> Tensor:
    """:func:`weighted_dsm_loss` at any σ per example: ``score_fn(x̃, sigma [B])`` (a network's ``forward_sigma``).

    :param sigma: [B] from :func:`draw_sigmas`; :param noise: [B, ...] N(0, I). :return: [B] loss per example.
    """
    loss = dsm_loss_sigma(score_fn, x, sigma, anneal_power=anneal_power, noise=noise)
    if weighting == "edm":
        loss = loss * edm_loss_weight(sigma.to(loss.dtype))
    return loss
