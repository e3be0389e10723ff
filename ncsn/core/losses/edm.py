"""EDM's preconditioning and loss weighting (Karras et al. 2022, Table 1), on NCSN's noise levels.

Images in [0, 1], centred on ½ with scale σ_d = ½ (the scale of 2x − 1 as the networks
already read it). The denoiser D(x̃; σ) = c_skip x̃ + c_out F(c_in x̃; σ) with

    c_skip = σ_d²/(σ² + σ_d²),   c_out = σ σ_d/√(σ² + σ_d²),   c_in = 1/√(σ² + σ_d²)

gives, through Tweedie's formula s = (D − x̃)/σ², the score

    s(x̃; σ) = −(x̃ − ½)/(σ² + σ_d²) + σ_d F/(σ √(σ² + σ_d²))        (:func:`edm_score`)

the exact score of N(½, σ_d² I) blurred by σ, plus the network's correction, whose target
has unit scale at every level. Training weighs the paper's ½ σ² ‖s − target‖² by
(σ² + σ_d²)/σ_d² (:func:`edm_loss_weight`), which is ½ ‖F − F_target‖²: every level's error
counts the same. Levels are drawn with probability ∝ the log-normal density of σ_i,
ln σ ~ N(P_mean, P_std²) (:func:`edm_level_probs`). EDM's P_mean = −1.2, P_std = 1.2 are for
data in [−1, 1]; σ here is half theirs, so the defaults are P_mean = −1.2 − ln 2 ≈ −1.89
and P_std = 1.2 (``train.log_sigma_mean``, ``train.log_sigma_std``).
"""

from __future__ import annotations

import torch
from torch import Tensor

SIGMA_DATA = 0.5
CENTRE = 0.5
P_MEAN = -1.89  # EDM's -1.2 less ln 2, rounded as in ncsn/conf/config.yaml
P_STD = 1.2


def edm_score(x: Tensor, sigma: Tensor, f: Tensor) -> Tensor:
    """s = −(x − ½)/(σ² + σ_d²) + σ_d F/(σ √(σ² + σ_d²)).

    :param x: [B, ...] noisy input x̃ (data range [0, 1]).
    :param sigma: [B, 1, ...] σ of each example, broadcastable to ``x``.
    :param f: [B, ...] the raw network output F.
    :return: [B, ...] the score.
    """
    var = sigma**2 + SIGMA_DATA**2
    return (CENTRE - x) / var + SIGMA_DATA * f / (sigma * torch.sqrt(var))


def edm_loss_weight(sigma: Tensor) -> Tensor:
    """(σ² + σ_d²)/σ_d²: the factor that turns the paper's σ²-weighted DSM loss into EDM's.

    :param sigma: any shape.
    """
    return (sigma**2 + SIGMA_DATA**2) / SIGMA_DATA**2


def edm_level_probs(sigmas: Tensor, mean: float = P_MEAN, std: float = P_STD) -> Tensor:
    """P(level i) ∝ exp(−(ln σ_i − P_mean)²/(2 P_std²)).

    :param sigmas: [L] noise levels.
    :param mean: / :param std: P_mean and P_std, of ln σ.
    :return: [L] probabilities (float32 on ``sigmas``' device), summing to 1.
    """
    density = torch.exp(-((sigmas.float().log() - mean) ** 2) / (2 * std**2))
    return density / density.sum()
