"""EDM's loss weighting and level distribution (Karras et al. 2022), on NCSN's noise levels.

With EDM's preconditioning (``ncsn.core.precond.edm_score``), training weighs the paper's
½ σ² ‖s − target‖² by (σ² + σ_d²)/σ_d² (:func:`edm_loss_weight`), which is ½ ‖F − F_target‖²:
every level's error counts the same. Levels are drawn with probability ∝ the log-normal
density of σ_i, ln σ ~ N(P_mean, P_std²) (:func:`edm_level_probs`). EDM's P_mean = −1.2,
P_std = 1.2 are for data in [−1, 1]; σ here is half theirs, so ``ncsn/conf/config.yaml``
sets P_mean = −1.2 − ln 2 and P_std = 1.2 (``train.log_sigma_mean``, ``train.log_sigma_std``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ncsn.core.precond import SIGMA_DATA


def edm_loss_weight(sigma: Tensor) -> Tensor:
    """(σ² + σ_d²)/σ_d²: the factor that turns the paper's σ²-weighted DSM loss into EDM's.

    :param sigma: any shape.
    """
    return (sigma**2 + SIGMA_DATA**2) / SIGMA_DATA**2


def edm_level_probs(sigmas: Tensor, mean: float, std: float) -> Tensor:
    """P(level i) ∝ exp(−(ln σ_i − P_mean)²/(2 P_std²)).

    :param sigmas: [L] noise levels.
    :param mean: / :param std: P_mean and P_std, of ln σ.
    :return: [L] probabilities (float32 on ``sigmas``' device), summing to 1.
    """
    density = torch.exp(-((sigmas.float().log() - mean) ** 2) / (2 * std**2))
    return density / density.sum()
