"""Instance normalisation++: the paper's conditional normaliser and NCSNv2's unconditional one.

Plain instance normalisation removes each channel's spatial mean μ_k, so an
image's colour shift (the relative means of its channels) is lost. IN++ adds it
back through μ̃_k, the channel means standardised across channels:

    μ̃_k = (μ_k − mean_j μ_j) / sqrt(var_j μ_j + ε)      (unbiased var over the C channels)
    IN(x)_k = (x_k − μ_k) / sqrt(s²_k + ε)                (s²_k: biased spatial variance)

and per channel k, for noise level i (NCSN paper, CondIN++):

    out_k = γ[i,k] · (IN(x)_k + α[i,k] · μ̃_k) + β[i,k]

The unconditional form (NCSNv2) uses one γ, α, β for every level. ε = 1e−5.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-5


def instance_norm_plus(x: Tensor, gamma: Tensor, alpha: Tensor, beta: Tensor, eps: float = EPS) -> Tensor:
    """out = γ · (IN(x) + α · μ̃) + β, evaluated as (x − μ) · γ/sqrt(s² + ε) + (γ·α·μ̃ + β).

    The right-hand form groups everything per channel: the full tensor goes
    through a mean, one subtraction, a sum of squares of the centred values
    (two-pass variance) and one fused multiply-add. (``torch.var_mean`` over
    H, W gives the same statistics but is several times slower on CPUs.)

    :param x: [B, C, H, W] features (C ≥ 2: μ̃ standardises across channels).
    :param gamma: [B, C] or [C] scales γ.
    :param alpha: [B, C] or [C] weights α of the standardised channel means.
    :param beta: [B, C] or [C] offsets β.
    :return: [B, C, H, W].
    """
    mean = x.mean(dim=(2, 3), keepdim=True)  # μ: [B, C, 1, 1]
    centred = x - mean
    var = torch.linalg.vector_norm(centred, dim=(2, 3)).square() / (x.shape[2] * x.shape[3])  # s²: [B, C]
    means = mean.flatten(1)  # [B, C]
    spread, centre = torch.var_mean(means, dim=1, keepdim=True)  # across channels, unbiased: [B, 1]
    means_std = (means - centre) / torch.sqrt(spread + eps)  # μ̃: [B, C]
    scale = gamma * torch.rsqrt(var + eps)  # [B, C]
    shift = gamma * alpha * means_std + beta  # [B, C]
    return torch.addcmul(shift[:, :, None, None], centred, scale[:, :, None, None])


class ConditionalInstanceNorm2dPlus(nn.Module):
    """CondIN++: out = γ[i,k] · (IN(x)_k + α[i,k] · μ̃_k) + β[i,k] for level i = ``levels[b]``.

    γ, α, β are rows of one embedding table [L, 3C] (columns γ | α | β);
    γ and α start at N(1, 0.02²), β at 0.
    """

    def __init__(self, num_features: int, num_levels: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.embed = nn.Embedding(num_levels, 3 * num_features)
        with torch.no_grad():
            self.embed.weight[:, : 2 * num_features].normal_(1.0, 0.02)
            self.embed.weight[:, 2 * num_features :].zero_()

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        """:param x: [B, C, H, W]. :param levels: [B] int64 in 0..L−1. :return: [B, C, H, W]."""
        gamma, alpha, beta = self.embed(levels).chunk(3, dim=1)  # [B, C] each
        return instance_norm_plus(x, gamma, alpha, beta)


class InstanceNorm2dPlus(nn.Module):
    """IN++ without level conditioning (NCSNv2): out = γ_k · (IN(x)_k + α_k · μ̃_k) + β_k.

    γ and α start at N(1, 0.02²), β at 0. ``forward`` accepts and ignores
    ``levels`` so that it can stand in for :class:`ConditionalInstanceNorm2dPlus`.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.gamma = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.alpha = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, levels: Tensor | None = None) -> Tensor:
        """:param x: [B, C, H, W]. :param levels: ignored. :return: [B, C, H, W]."""
        return instance_norm_plus(x, self.gamma, self.alpha, self.beta)
