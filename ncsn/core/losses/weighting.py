"""The training objective's weighting over the noise levels (``train.weighting``).

* ``"paper"``: levels uniform on {0..L−1}, λ(σ) = σ^anneal_power (paper Eq. 6).
* ``"edm"``: levels drawn by a log-normal density of σ (``train.log_sigma_mean``,
  ``train.log_sigma_std``), λ(σ) = σ²·(σ² + σ_d²)/σ_d² (``ncsn.core.losses.edm``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ncsn.core.losses.dsm import ScoreFn, dsm_loss
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
