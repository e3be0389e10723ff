"""Noise-level conditioning shared by the small score networks.

A level index i is turned into a vector through its noise scale: Fourier
features of log σ_i followed by a two-layer SiLU MLP. Going through log σ rather
than a lookup table over indices means the same module serves any number of
levels (NCSNv2's technique 2 can give hundreds) and neighbouring levels share
parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def fourier_features(t: Tensor, dim: int, min_freq: float = 0.25, max_freq: float = 64.0) -> Tensor:
    """``[sin(f_k t), cos(f_k t)]`` with ``dim // 2`` frequencies spaced geometrically.

    The default band suits ``t = log σ``: the slowest period (≈ 25) spans every
    usual schedule (log σ ∈ [−7, 4]); the fastest (≈ 0.1) separates levels 0.02
    apart in log σ.

    :param t: [B] real values.
    :param dim: an even output width.
    :return: [B, dim].
    """
    assert dim % 2 == 0, f"dim must be even, got {dim}"
    freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), dim // 2, device=t.device))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class SigmaEmbedding(nn.Module):
    """σ [B] → conditioning vector [B, dim]: Fourier features of log σ, Linear, SiLU, Linear."""

    def __init__(self, dim: int, fourier_dim: int = 64) -> None:
        super().__init__()
        self.fourier_dim = fourier_dim
        self.mlp = nn.Sequential(nn.Linear(fourier_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: Tensor) -> Tensor:
        """:param sigma: [B] positive noise scales. :return: [B, dim]."""
        return self.mlp(fourier_features(sigma.log(), self.fourier_dim))
