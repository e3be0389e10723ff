"""Gaussian mixtures: exact perturbed scores and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core.sigmas import geometric_sigmas
from ncsn.core.toy import GaussianMixture, paper_mixture


def three_component_mixture() -> GaussianMixture:
    return GaussianMixture(weights=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
                           means=torch.tensor([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5], [-3.0, 0.0, 2.0]],
                                              dtype=torch.float64),
                           stds=torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64))


def autograd_score(mix: GaussianMixture, x: torch.Tensor, sigma) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)
    return grad


@pytest.mark.parametrize("sigma", [0.0, 0.7, "per-example"])
def test_score_is_gradient_of_log_prob(sigma):
    mix = three_component_mixture()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=gen, dtype=torch.float64) * 3
    if sigma == "per-example":
        sigma = torch.rand(200, generator=gen, dtype=torch.float64) * 5
    torch.testing.assert_close(mix.score(x, sigma), autograd_score(mix, x, sigma), rtol=1e-10, atol=1e-12)


def test_paper_mixture_score_matches_autograd_in_float32():
    mix = paper_mixture()
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(1)) * 16 - 8
    torch.testing.assert_close(mix.score(x, 2.0), autograd_score(mix, x, 2.0), rtol=1e-4, atol=1e-5)


def test_log_prob_of_one_component_is_the_gaussian_density():
    mean, std, sigma = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5, 1.2
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], torch.tensor([std], dtype=torch.float64))
    x = torch.randn(10, 2, dtype=torch.float64)
    ref = torch.distributions.Normal(mean, math.sqrt(std ** 2 + sigma ** 2)).log_prob(x).sum(1)
    torch.testing.assert_close(mix.log_prob(x, sigma), ref)


def test_score_is_stable_far_from_the_modes():
    mix = paper_mixture()
    x = torch.tensor([[1000.0, 1000.0], [-1000.0, -900.0]])
    score = mix.score(x, 0.5)
    assert torch.isfinite(score).all()
    nearest = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
    torch.testing.assert_close(score, -(x - nearest) / 1.25)


def test_sample_mode_fractions_match_weights():
    mix = paper_mixture()
    x = mix.sample(20000, generator=torch.Generator().manual_seed(0))
    near_small = (x.sum(1) < 0).float()
    assert near_small.mean().item() == pytest.approx(0.2, abs=0.015)  # ± 5 standard errors
    small, large = x[near_small.bool()], x[~near_small.bool()]
    torch.testing.assert_close(small.mean(0), torch.tensor([-5.0, -5.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(large.std(0), torch.tensor([1.0, 1.0]), atol=0.03, rtol=0)


def test_sample_is_reproducible_with_a_generator():
    mix = paper_mixture()
    a = mix.sample(7, generator=torch.Generator().manual_seed(3))
    b = mix.sample(7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_level_score_uses_the_sigma_of_each_level():
    mix = paper_mixture()
    sigmas = geometric_sigmas(20.0, 1.0, 10)
    x = torch.randn(4, 2)
    levels = torch.tensor([0, 3, 9, 3])
    torch.testing.assert_close(mix.level_score(sigmas)(x, levels), mix.score(x, sigmas[levels]))
    assert not torch.allclose(mix.level_score(sigmas)(x, levels), mix.score(x, 1.0))


def test_mixture_validation():
    with pytest.raises(ValueError):
        GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError):
        GaussianMixture(torch.tensor([0.5, 0.5]), torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError):
        GaussianMixture(torch.tensor([0.5, 0.5]), torch.zeros(2, 2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError):
        paper_mixture().score(torch.zeros(3, 2), torch.ones(4))
