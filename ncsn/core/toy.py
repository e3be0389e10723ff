"""Isotropic Gaussian mixtures with exact (noise-perturbed) scores: the paper's toy data.

For p = Σ_k w_k N(μ_k, s_k² I) and noise level σ, the perturbed density is
q_σ = p ∗ N(0, σ² I) = Σ_k w_k N(μ_k, (s_k² + σ²) I), whose score is

    ∇ₓ log q_σ(x) = Σ_k r_k(x) (μ_k − x) / (s_k² + σ²),

with responsibilities r_k(x) = softmax_k(log w_k + log N(x; μ_k, (s_k² + σ²) I)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ncsn.core.rng import randn_like


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Σ_k w_k N(μ_k, s_k² I) in D dimensions.

    :param weights: [K] positive mixture weights summing to 1.
    :param means: [K, D] component means μ_k.
    :param stds: [K] component standard deviations s_k > 0.
    """

    weights: Tensor
    means: Tensor
    stds: Tensor

    def __post_init__(self) -> None:
        k = self.weights.shape[0]
        if self.weights.ndim != 1 or self.means.ndim != 2 or self.stds.shape != (k,) or self.means.shape[0] != k:
            raise ValueError(f"expected weights [K], means [K, D], stds [K]; got {tuple(self.weights.shape)}, "
                             f"{tuple(self.means.shape)}, {tuple(self.stds.shape)}")
        if not bool((self.weights > 0).all()) or abs(float(self.weights.sum()) - 1.0) > 1e-5:
            raise ValueError(f"weights must be positive and sum to 1, got {self.weights.tolist()}")
        if not bool((self.stds > 0).all()):
            raise ValueError(f"stds must be positive, got {self.stds.tolist()}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianMixture:
        """The same mixture with its parameters on ``device`` / in ``dtype``."""
        return GaussianMixture(*(t.to(device=device, dtype=dtype) for t in (self.weights, self.means, self.stds)))

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n independent draws: a component k ~ Categorical(w), then μ_k + s_k z.

        :param generator: on the mixture's device.
        :return: [n, D] on the mixture's device.
        """
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = randn_like(torch.empty(n, self.dim, dtype=self.means.dtype, device=self.means.device), generator)
        return self.means[k] + self.stds[k, None] * z

    def _component_log_probs(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """log w_k + log N(x; μ_k, v_k I) [n, K] and the variances v_k = s_k² + σ² [n or 1, K]."""
        weights, means, stds = (t.to(device=x.device, dtype=x.dtype) for t in (self.weights, self.means, self.stds))
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] != x.shape[0]):
            raise ValueError(f"sigma must be a scalar or [n] = [{x.shape[0]}], got shape {tuple(sigma.shape)}")
        var = stds.pow(2)[None, :] + sigma.reshape(-1, 1).pow(2)  # [n or 1, K]
        sq_dist = (x[:, None, :] - means[None, :, :]).pow(2).sum(-1)  # [n, K]
        log_norm = -0.5 * sq_dist / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return weights.log()[None, :] + log_norm, var

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log q_σ(x), the log density of the mixture convolved with N(0, σ² I).

        :param x: [n, D] points.
        :param sigma: noise level, a scalar or one per point [n].
        :return: [n].
        """
        joint, _ = self._component_log_probs(x, sigma)
        return torch.logsumexp(joint, dim=1)

    def score(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """∇ₓ log q_σ(x) = Σ_k r_k(x) (μ_k − x)/(s_k² + σ²), stable through softmax responsibilities.

        :param x: [n, D] points.
        :param sigma: noise level, a scalar or one per point [n].
        :return: [n, D].
        """
        joint, var = self._component_log_probs(x, sigma)
        resp = torch.softmax(joint, dim=1)  # [n, K]
        means = self.means.to(device=x.device, dtype=x.dtype)
        # Σ_k (r_k / v_k) μ_k − (Σ_k r_k / v_k) x
        precision = resp / var  # [n, K]
        return precision @ means - precision.sum(1, keepdim=True) * x

    def denoiser(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The exact denoiser D(x; σ) = E[x₀ | x] = x + σ² ∇ₓ log q_σ(x) (Tweedie), the samplers' interface.

        :param x: [n, D] points. :param sigma: [n] noise levels (or a scalar).
        :return: [n, D].
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return x + sigma.reshape(-1, 1) ** 2 * self.score(x, sigma)

    def level_score(self, sigmas: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """A noise-conditional score ``score_fn(x, levels) = score(x, sigmas[levels])``.

        :param sigmas: [L] noise levels.
        :return: a function of x [n, D] and levels [n] (int64) returning [n, D].
        """

        def score_fn(x: Tensor, levels: Tensor) -> Tensor:
            return self.score(x, sigmas.to(device=x.device, dtype=x.dtype)[levels])

        return score_fn


def paper_mixture() -> GaussianMixture:
    """The paper's toy density p = 1/5 · N((−5, −5), I) + 4/5 · N((5, 5), I), float32 on the CPU."""
    return GaussianMixture(
        weights=torch.tensor([0.2, 0.8]),
        means=torch.tensor([[-5.0, -5.0], [5.0, 5.0]]),
        stds=torch.tensor([1.0, 1.0]),
    )
