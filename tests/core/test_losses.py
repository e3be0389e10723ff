"""Score-matching losses against known answers on a Gaussian N(μ, s²I)."""

from __future__ import annotations

import pytest
import torch

from ncsn.core.losses import annealed_ssm_loss, dsm_loss, dsm_loss_at, ssm_loss
from ncsn.core.rng import make_generators

MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
S = 0.5  # data standard deviation
SIGMAS = torch.tensor([2.0, 0.5, 0.1], dtype=torch.float64)


def gaussian_data(n: int, seed: int) -> torch.Tensor:
    return MU + S * torch.randn(n, len(MU), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def linear_score(a: torch.Tensor, b: torch.Tensor):
    """s(x, i) = a_i x + b_i."""
    return lambda x, levels: a[levels, None] * x + b[levels]


def optimal_params(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Score of N(μ, (s² + σ²) I): a_i = −1/(s² + σ_i²), b_i = μ/(s² + σ_i²)."""
    var = S ** 2 + sigmas ** 2
    return -1.0 / var, MU[None, :] / var[:, None]


# ---------------------------------------------------------------- denoising score matching

def test_dsm_matches_its_formula():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    noise = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    sigmas = torch.tensor([2.0, 0.5], dtype=torch.float64)
    levels = torch.tensor([1, 0])
    score = lambda y, i: 3.0 * y  # noqa: E731
    got = dsm_loss(score, x, sigmas, levels=levels, noise=noise, anneal_power=1.0)
    sigma = sigmas[levels][:, None]
    x_tilde = x + sigma * noise
    want = 0.5 * (3.0 * x_tilde + (x_tilde - x) / sigma ** 2).pow(2).sum(1) * sigma[:, 0]
    torch.testing.assert_close(got, want)


def test_dsm_expected_loss_is_known_at_the_optimum():
    """At the optimum the residual per dimension has variance s²/(σ² (s² + σ²)),
    so σ² · ℓ = ½ D s²/(s² + σ²)."""
    x = gaussian_data(40000, 0)
    a, b = optimal_params(SIGMAS)
    for level in range(len(SIGMAS)):
        loss = dsm_loss_at(linear_score(a, b), x, SIGMAS, level, generator=torch.Generator().manual_seed(1))
        want = 0.5 * len(MU) * S ** 2 / (S ** 2 + SIGMAS[level] ** 2)
        assert loss.mean().item() == pytest.approx(want.item(), rel=0.03)


@pytest.mark.parametrize("perturb", ["a_up", "a_down", "b"])
def test_dsm_expected_loss_is_lowest_at_the_true_score(perturb):
    x = gaussian_data(20000, 2)
    a, b = optimal_params(SIGMAS)
    a2, b2 = a.clone(), b.clone()
    if perturb == "a_up":
        a2 = a * 1.1
    elif perturb == "a_down":
        a2 = a * 0.9
    else:
        b2 = b + 0.1 / (S ** 2 + SIGMAS[:, None] ** 2)
    # Common random numbers: the same levels and noise for both parameter sets.
    best = dsm_loss(linear_score(a, b), x, SIGMAS, generator=torch.Generator().manual_seed(3)).mean()
    other = dsm_loss(linear_score(a2, b2), x, SIGMAS, generator=torch.Generator().manual_seed(3)).mean()
    assert best < other


def test_dsm_training_recovers_the_perturbed_gaussian_score():
    torch.manual_seed(0)
    a = torch.zeros(len(SIGMAS), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(SIGMAS), len(MU), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([a, b], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)
    gen = torch.Generator().manual_seed(4)
    for _ in range(1000):
        x = MU + S * torch.randn(512, len(MU), generator=gen, dtype=torch.float64)
        loss = dsm_loss(linear_score(a, b), x, SIGMAS, generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    a_opt, b_opt = optimal_params(SIGMAS)
    torch.testing.assert_close(a.detach(), a_opt, rtol=0.03, atol=0)
    torch.testing.assert_close(b.detach(), b_opt, rtol=0.06, atol=0.01)


def test_dsm_randomness_comes_from_the_generator():
    x = gaussian_data(8, 5)
    a, b = optimal_params(SIGMAS)
    f = linear_score(a * 0.5, b)
    one = dsm_loss(f, x, SIGMAS, generator=torch.Generator().manual_seed(6))
    assert torch.equal(one, dsm_loss(f, x, SIGMAS, generator=torch.Generator().manual_seed(6)))
    assert not torch.equal(one, dsm_loss(f, x, SIGMAS, generator=torch.Generator().manual_seed(7)))
    # Per-example generators: example i depends only on its own seed.
    full = dsm_loss(f, x, SIGMAS, generator=make_generators(range(8)))
    part = dsm_loss(f, x[3:5], SIGMAS, generator=make_generators([3, 4]))
    torch.testing.assert_close(full[3:5], part, rtol=1e-12, atol=0)


def test_dsm_loss_at_fixes_the_level():
    x = gaussian_data(16, 8)
    a, b = optimal_params(SIGMAS)
    levels = torch.full((16,), 2, dtype=torch.long)
    at = dsm_loss_at(linear_score(a, b), x, SIGMAS, 2, generator=torch.Generator().manual_seed(9))
    ref = dsm_loss(linear_score(a, b), x, SIGMAS, levels=levels, generator=torch.Generator().manual_seed(9))
    assert torch.equal(at, ref) and at.shape == (16,)


# ---------------------------------------------------------------- sliced score matching

def gaussian_score(mu: torch.Tensor, var: float):
    return lambda x: -(x - mu) / var


def exact_sm_objective_gaussian(mu: torch.Tensor, var: float) -> float:
    """J = E[½‖s‖² + tr ∇s] for s(x) = −(x − μ')/v' under x ~ N(μ, s²I)."""
    d = len(MU)
    return (0.5 * (d * S ** 2 + (MU - mu).pow(2).sum().item()) / var ** 2) - d / var


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
def test_ssm_is_lowest_at_the_true_score(projection):
    x = gaussian_data(20000, 10)
    candidates = {"true": (MU, S ** 2), "wide": (MU, 1.2 * S ** 2), "narrow": (MU, 0.8 * S ** 2),
                  "shifted": (MU + 0.2, S ** 2)}
    losses = {}
    for name, (mu, var) in candidates.items():
        losses[name] = ssm_loss(gaussian_score(mu, var), x, projection=projection,
                                generator=torch.Generator().manual_seed(11)).mean().item()
        assert losses[name] == pytest.approx(exact_sm_objective_gaussian(mu, var), rel=0.05)
    assert losses["true"] == min(losses.values())


def test_ssm_projections_agree_with_exact_score_matching():
    """A non-symmetric linear score s(x) = A x + c: J = ½ E‖Ax + c‖² + tr A."""
    gen = torch.Generator().manual_seed(12)
    A = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    c = torch.randn(3, generator=gen, dtype=torch.float64)
    score = lambda x: x @ A.T + c  # noqa: E731
    mean = A @ MU + c
    exact = 0.5 * (mean.pow(2).sum() + S ** 2 * A.pow(2).sum()) + torch.trace(A)
    x = gaussian_data(40000, 13)
    for projection in ("gaussian", "rademacher"):
        est = ssm_loss(score, x, n_projections=2, projection=projection, generator=gen).mean()
        assert est.item() == pytest.approx(exact.item(), rel=0.03)


def test_ssm_trains_and_works_under_no_grad():
    weight = torch.tensor(0.3, requires_grad=True)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(14))
    loss = ssm_loss(lambda y: -weight * y.pow(3), x, generator=torch.Generator().manual_seed(15)).mean()
    loss.backward()
    assert weight.grad is not None and weight.grad.abs() > 0
    with torch.no_grad():
        value = ssm_loss(lambda y: -weight * y.pow(3), x, generator=torch.Generator().manual_seed(15)).mean()
    torch.testing.assert_close(value, loss.detach())
    with pytest.raises(ValueError):
        ssm_loss(lambda y: y, x, projection="sphere")


def test_annealed_ssm_expected_loss_at_the_optimum():
    """Perturbed data are N(μ, vI), v = s² + σ²; at its score J = −D/(2v), times σ²."""
    x = gaussian_data(20000, 16)
    a, b = optimal_params(SIGMAS)
    for level in range(len(SIGMAS)):
        levels = torch.full((len(x),), level, dtype=torch.long)
        loss = annealed_ssm_loss(linear_score(a, b), x, SIGMAS, levels=levels, n_projections=2,
                                 generator=torch.Generator().manual_seed(17)).mean()
        var = S ** 2 + SIGMAS[level] ** 2
        want = -0.5 * len(MU) / var * SIGMAS[level] ** 2
        assert loss.item() == pytest.approx(want.item(), rel=0.05)
    # and a worse score does worse
    best = annealed_ssm_loss(linear_score(a, b), x, SIGMAS, generator=torch.Generator().manual_seed(18)).mean()
    worse = annealed_ssm_loss(linear_score(a * 0.8, b), x, SIGMAS, generator=torch.Generator().manual_seed(18))
    assert best < worse.mean()
