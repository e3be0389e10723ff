"""Known answers for the probability-flow likelihood: the exact log-density of the blurred data for a
Gaussian and for a two-mode mixture, an unbiased Hutchinson estimate, and bits/dim of a uniform density."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core.likelihood import bits_per_dim, dequantize, log_likelihood
from ncsn.core.rng import make_generators
from ncsn.core.toy import GaussianMixture

SIGMA_MIN, SIGMA_MAX = 0.01, 1e4  # the prior N(0, σmax² I) is off by O(|μ| / σmax) = 1e-4 nats here


def _mixture() -> GaussianMixture:
    return GaussianMixture(torch.tensor([0.3, 0.7], dtype=torch.float64),
                           torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=torch.float64),
                           torch.tensor([0.3, 0.5], dtype=torch.float64))


def _mixture_denoiser(mixture: GaussianMixture):
    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # Tweedie, with the exact score
        return x + sigma[:, None] ** 2 * mixture.score(x, sigma)

    return denoiser


def test_a_gaussian_gets_its_analytic_log_density() -> None:
    mu, s = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.7

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # E[x0 | x] for x0 ~ N(μ, s² I)
        return mu + (s**2 / (s**2 + sigma[:, None] ** 2)) * (x - mu)

    x = mu + s * torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    var = s**2 + SIGMA_MIN**2
    exact = -0.5 * (x - mu).pow(2).sum(1) / var - math.log(2 * math.pi * var)
    got = log_likelihood(denoiser, x, SIGMA_MIN, SIGMA_MAX, exact_divergence=True, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(got, exact, atol=5e-4, rtol=0)


def test_a_two_mode_mixture_gets_its_analytic_log_density() -> None:
    mixture = _mixture()
    x = torch.cat([mixture.sample(5, generator=torch.Generator().manual_seed(1)),
                   torch.tensor([[0.0, 0.0], [2.5, 2.0]], dtype=torch.float64)])  # between the modes, far out
    got = log_likelihood(_mixture_denoiser(mixture), x, SIGMA_MIN, SIGMA_MAX, exact_divergence=True,
                         rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(got, mixture.log_prob(x, SIGMA_MIN), atol=5e-4, rtol=0)


def test_the_hutchinson_estimate_is_unbiased() -> None:
    mixture = _mixture()
    n = 400
    x = torch.tensor([[0.2, -0.1]], dtype=torch.float64).expand(n, 2).contiguous()  # one point, n probes
    exact = log_likelihood(_mixture_denoiser(mixture), x[:1], SIGMA_MIN, SIGMA_MAX, exact_divergence=True)
    estimates = log_likelihood(_mixture_denoiser(mixture), x, SIGMA_MIN, SIGMA_MAX,
                               generator=make_generators(range(n)))
    standard_error = estimates.std() / math.sqrt(n)
    assert estimates.std() > 1e-3  # the probes differ, so the estimates do
    assert abs(float(estimates.mean() - exact[0])) < 3 * float(standard_error)


def test_the_probes_follow_the_seeds() -> None:
    mixture = _mixture()
    x = mixture.sample(3, generator=torch.Generator().manual_seed(2))
    run = [log_likelihood(_mixture_denoiser(mixture), x, SIGMA_MIN, 10.0, generator=make_generators([0, 1, 2]))
           for _ in range(2)]
    other = log_likelihood(_mixture_denoiser(mixture), x, SIGMA_MIN, 10.0, generator=make_generators([5, 6, 7]))
    assert torch.equal(run[0], run[1]) and not torch.equal(run[0], other)


def test_bits_per_dim_of_a_uniform_density_is_eight() -> None:
    assert bits_per_dim(torch.zeros(3), dims=784).tolist() == [8.0, 8.0, 8.0]  # log p = 0 on [0, 1]^d
    assert bits_per_dim(torch.tensor([-784 * math.log(2.0)]), dims=784).item() == pytest.approx(9.0)


def test_dequantised_values_stay_in_their_bin() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).repeat(4)
    x = dequantize(pixels, torch.Generator().manual_seed(0))
    k = pixels.double()
    assert bool(((x >= k / 256) & (x < (k + 1) / 256)).all())
    with pytest.raises(ValueError, match="uint8"):
        dequantize(pixels.float())


def test_the_noise_range_must_increase() -> None:
    with pytest.raises(ValueError, match="sigma_min"):
        log_likelihood(lambda x, s: x, torch.zeros(1, 2), 1.0, 0.5)
