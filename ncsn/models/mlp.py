"""A noise-conditional MLP score network for vector data (the 2-D toy experiments)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ncsn.core.precond import ncsnv2_score
from ncsn.models.embedding import SigmaEmbedding


class LevelMLP(nn.Module):
    """s_θ(x, i) = MLP(x / √(1 + σ_i²), e(σ_i)) / σ_i for x ∈ R^D.

    * Input: divided by √(1 + σ_i²), the standard deviation of x̃ = x + σ_i z
      for unit-variance data, so hidden activations stay O(1) from σ = 0.01 to
      σ = 50 without knowing the data's scale exactly.
    * Conditioning: ``e(σ_i)`` (``SigmaEmbedding``: Fourier features of log σ_i
      and an MLP) is projected by one Linear per hidden layer and added to that
      layer's pre-activation.
    * Body: ``depth`` hidden layers of width ``hidden`` with SiLU, which is
      smooth, so the Jacobian-vector products of sliced score matching are
      well defined.
    * Output: the last Linear starts at zero and its result is divided by σ_i
      (NCSNv2 technique 3), so the quantity learned, σ_i·s_θ, is O(1) at every
      level and the initial score is 0.

    Unconditional use: ``LevelMLP(dim, hidden, 1, sigmas=torch.ones(1))`` with
    ``levels`` all zero is a plain score model s_θ(x) (the embedding is then a
    learned constant and the division is by 1).
    """

    def __init__(self, dim: int, hidden: int, num_levels: int, *, sigmas: Tensor, depth: int = 3) -> None:
        super().__init__()
        assert sigmas.shape == (num_levels,), f"sigmas must have shape [{num_levels}], got {tuple(sigmas.shape)}"
        assert dim >= 1 and hidden >= 1 and depth >= 1
        self.register_buffer("sigmas", sigmas.detach().clone().float())
        self.embed = SigmaEmbedding(hidden)
        self.layers = nn.ModuleList([nn.Linear(dim if k == 0 else hidden, hidden) for k in range(depth)])
        self.cond = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.act = nn.SiLU()
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        """:param x: [B, D] (noisy) data. :param levels: [B] int64 in 0..L−1 (0 = largest σ).

        :return: [B, D] estimated score ∇ₓ log p_σ(x).
        """
        assert x.ndim == 2 and levels.shape == (x.shape[0],), f"x {tuple(x.shape)}, levels {tuple(levels.shape)}"
        return self.forward_sigma(x, self.sigmas[levels])

    def forward_sigma(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The score at any noise level: the embedding of σ is continuous.

        :param x: [B, D] (noisy) data. :param sigma: [B] σ of each example.
        :return: [B, D] estimated score ∇ₓ log p_σ(x).
        """
        assert x.ndim == 2 and sigma.shape == (x.shape[0],), f"x {tuple(x.shape)}, sigma {tuple(sigma.shape)}"
        e = self.embed(sigma)  # [B, hidden]
        h = x / torch.sqrt(1.0 + sigma**2)[:, None]
        for layer, cond in zip(self.layers, self.cond):
            h = self.act(layer(h) + cond(e))
        return ncsnv2_score(self.out(h), sigma[:, None])
