"""``train.sigma_sampling: continuous``: σ drawn over [σ_L, σ_1] (log-uniform, or EDM's log-normal truncated
to the range), and the DSM loss at any σ that the level loss is a case of."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core.losses import dsm_loss
from ncsn.core.losses.dsm import dsm_loss_sigma
from ncsn.core.losses.weighting import draw_sigmas, weighted_dsm_loss, weighted_dsm_loss_sigma
from ncsn.core.sigmas import geometric_sigmas


def test_log_uniform_draws_cover_the_trained_range() -> None:
    sigma = draw_sigmas("paper", 0.01, 5.0, 20000, torch.Generator().manual_seed(0))
    assert sigma.dtype == torch.float32 and float(sigma.min()) >= 0.01 and float(sigma.max()) <= 5.0
    log = sigma.double().log()
    lo, hi = math.log(0.01), math.log(5.0)
    assert float(log.mean()) == pytest.approx((lo + hi) / 2, abs=0.05)
    assert float(log.var()) == pytest.approx((hi - lo) ** 2 / 12, rel=0.05)


def test_edm_draws_are_the_log_normal_truncated_to_the_range() -> None:
    """ln σ ~ N(0, 1.2²) cut to [ln 0.01, ln 5]: the sample median is the truncated normal's."""
    sigma = draw_sigmas("edm", 0.01, 5.0, 20000, torch.Generator().manual_seed(0), log_sigma_mean=0.0,
                        log_sigma_std=1.2)
    assert float(sigma.min()) >= 0.01 and float(sigma.max()) <= 5.0
    a, b = math.log(0.01) / 1.2, math.log(5.0) / 1.2
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    mid = (phi(a) + phi(b)) / 2
    inside = torch.special.ndtri(torch.tensor(mid, dtype=torch.float64)).item() * 1.2
    assert float(sigma.double().log().median()) == pytest.approx(inside, abs=0.05)
    within = (sigma.log().abs() < 1.2).float().mean().item()  # ±1 std, renormalised by the cut
    assert within == pytest.approx((phi(1) - phi(-1)) / (phi(b) - phi(a)), abs=0.02)


@pytest.mark.parametrize("weighting", ["paper", "edm"])
def test_the_loss_at_a_trained_level_is_the_level_loss(weighting: str) -> None:
    sigmas = geometric_sigmas(1.0, 0.01, 5)
    x = torch.rand(6, 3)
    levels = torch.tensor([0, 1, 2, 3, 4, 2])
    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    by_level = lambda x, i: -x / (1 + sigmas[i][:, None] ** 2)  # noqa: E731
    by_sigma = lambda x, s: -x / (1 + s[:, None] ** 2)  # noqa: E731
    want = weighted_dsm_loss(by_level, x, sigmas, weighting=weighting, anneal_power=2.0, levels=levels, noise=noise)
    got = weighted_dsm_loss_sigma(by_sigma, x, sigmas[levels], weighting=weighting, anneal_power=2.0, noise=noise)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(dsm_loss_sigma(by_sigma, x, sigmas[levels], noise=noise),
                               dsm_loss(by_level, x, sigmas, levels=levels, noise=noise))
