"""Langevin samplers with exact scores: the paper's mixture, step-size conventions, determinism."""

from __future__ import annotations

import pytest
import torch

from ncsn.core.rng import make_generators
from ncsn.core.sampling import (annealed_langevin, annealed_langevin_progressive, corrector_steps, langevin,
                           predictor_corrector, predictor_corrector_progressive, step_sizes, technique4_eps)
from ncsn.core.sigmas import geometric_sigmas
from ncsn.core.toy import paper_mixture

MIXTURE_SIGMAS = geometric_sigmas(20.0, 1.0, 10)


pytestmark = pytest.mark.usefixtures("single_thread")


def fraction_near_small_mode(x: torch.Tensor) -> float:
    """Fraction of points nearer (−5, −5) than (5, 5)."""
    return (x.sum(1) < 0).float().mean().item()


def uniform_starts(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 16 - 8


def gaussian_level_score(var: float, sigmas: torch.Tensor):
    """Exact score of N(0, var) perturbed by N(0, σ_i²), per coordinate."""
    return lambda x, levels: -x / (var + sigmas.to(x.dtype)[levels].reshape(-1, *([1] * (x.ndim - 1))) ** 2)


def test_annealed_langevin_recovers_the_mixture_weights():
    """Paper Fig. 3: annealed Langevin with exact scores puts 1/5 of the mass in the small mode."""
    mix = paper_mixture()
    x = annealed_langevin(mix.level_score(MIXTURE_SIGMAS), uniform_starts(10000, 0), MIXTURE_SIGMAS,
                          n_steps_each=100, eps=0.1, generator=torch.Generator().manual_seed(1))
    assert fraction_near_small_mode(x) == pytest.approx(0.20, abs=0.04)


def test_plain_langevin_gets_the_weights_wrong():
    """Paper Fig. 3: without annealing each mode keeps the starts of its half-plane (≈ 0.49)."""
    mix = paper_mixture()
    x = langevin(mix.score, uniform_starts(10000, 0), n_steps=1000, step_size=0.1,
                 generator=torch.Generator().manual_seed(1))
    assert abs(fraction_near_small_mode(x) - 0.20) > 0.1


def test_reference_convention_with_half_the_step_gives_the_same_samples():
    mix = paper_mixture()
    x0 = uniform_starts(500, 2)
    kwargs = dict(n_steps_each=10, denoise=True)
    paper = annealed_langevin(mix.level_score(MIXTURE_SIGMAS), x0, MIXTURE_SIGMAS, eps=0.1,
                              generator=torch.Generator().manual_seed(3), **kwargs)
    reference = annealed_langevin(mix.level_score(MIXTURE_SIGMAS), x0, MIXTURE_SIGMAS, eps=0.05,
                                  convention="reference", generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(paper, reference)


def test_step_sizes_scale_with_sigma_squared():
    assert step_sizes([2.0, 1.0], 0.1) == pytest.approx([0.4, 0.1])
    assert step_sizes([2.0, 1.0], 0.1, "reference") == pytest.approx([0.8, 0.2])
    with pytest.raises(ValueError):
        step_sizes([2.0, 1.0], 0.1, "karras")


@pytest.mark.parametrize("convention,eps", [("paper", 0.5), ("reference", 0.25)])
def test_stationary_variance_matches_the_discretised_chain(convention, eps):
    """On N(0, 1) with exact score, x ← (1 − α/2) x + √α z has variance α/(1 − (1 − α/2)²):
    1.1429 for α = 0.5 (it would be 1.3333 if the convention were confused)."""
    # One level, so α = ε (paper) or 2ε (reference); score of N(0, 1).
    x = annealed_langevin(lambda y, levels: -y, torch.zeros(20000, 1), torch.tensor([1.0]), n_steps_each=60,
                          eps=eps, convention=convention, generator=torch.Generator().manual_seed(4))
    alpha = 0.5
    assert x.var().item() == pytest.approx(alpha / (1 - (1 - alpha / 2) ** 2), rel=0.04)


def test_plain_langevin_stationary_variance():
    x = langevin(lambda y: -y, torch.zeros(20000, 1), n_steps=60, step_size=0.5,
                 generator=torch.Generator().manual_seed(5))
    assert x.var().item() == pytest.approx(0.5 / (1 - 0.75 ** 2), rel=0.04)


def test_denoise_is_the_tweedie_step():
    sigmas = torch.tensor([3.0, 0.5])
    score = gaussian_level_score(2.0, sigmas)
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(6))
    x = annealed_langevin(score, x0, sigmas, n_steps_each=0, eps=0.1, denoise=True)
    torch.testing.assert_close(x, x0 - 0.25 * x0 / (2.0 + 0.25))


def test_same_seed_same_samples():
    mix = paper_mixture()
    run = lambda seed: annealed_langevin(mix.level_score(MIXTURE_SIGMAS), uniform_starts(64, 7),  # noqa: E731
                                         MIXTURE_SIGMAS, n_steps_each=5, eps=0.1,
                                         generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(8), run(8))
    assert not torch.equal(run(8), run(9))


@pytest.mark.parametrize("score_kind", ["gaussian", "mixture"])
def test_per_example_generators_make_samples_independent_of_the_batch(score_kind):
    sigmas = geometric_sigmas(5.0, 0.5, 4)
    score = gaussian_level_score(1.0, sigmas) if score_kind == "gaussian" else paper_mixture().level_score(sigmas)
    seeds = [10, 11, 12, 13, 14, 15]
    starts = {s: torch.rand(1, 2, generator=torch.Generator().manual_seed(s)) for s in seeds}

    def sample(batch_seeds):
        x0 = torch.cat([starts[s] for s in batch_seeds])
        return annealed_langevin(score, x0, sigmas, n_steps_each=7, eps=0.05, denoise=True,
                                 generator=make_generators(batch_seeds, "cpu"))

    full = sample(seeds)
    alone = sample([12])
    shuffled = sample([14, 12, 10])
    assert torch.equal(full[2], alone[0])
    assert torch.equal(full[2], shuffled[1]) and torch.equal(full[4], shuffled[0])
    assert not torch.equal(full[2], full[3])


@pytest.mark.parametrize("denoise", [False, True])
def test_progressive_yields_each_level_and_ends_at_the_sample(denoise):
    mix = paper_mixture()
    score = mix.level_score(MIXTURE_SIGMAS)
    x0 = uniform_starts(32, 9)
    kwargs = dict(n_steps_each=3, eps=0.1, denoise=denoise)
    items = list(annealed_langevin_progressive(score, x0, MIXTURE_SIGMAS,
                                               generator=torch.Generator().manual_seed(10), **kwargs))
    levels = [level for level, _ in items]
    assert levels == list(range(10)) + ([10] if denoise else [])
    final = annealed_langevin(score, x0, MIXTURE_SIGMAS, generator=torch.Generator().manual_seed(10), **kwargs)
    assert torch.equal(items[-1][1], final)


def test_score_and_hook_calls():
    """T score calls per level with a constant level index, the hook after every step."""
    sigmas = torch.tensor([4.0, 2.0, 1.0])
    seen, hooked = [], []

    def score(x, levels):
        seen.append(levels.clone())
        return torch.zeros_like(x)

    def hook(x, level):
        hooked.append(level)
        return x

    out = annealed_langevin(score, torch.zeros(3, 2), sigmas, n_steps_each=4, eps=0.1, denoise=True, hook=hook)
    assert [int(lv[0]) for lv in seen] == [0] * 4 + [1] * 4 + [2] * 4 + [2]
    assert all(lv.dtype == torch.long and lv.shape == (3,) and bool((lv == lv[0]).all()) for lv in seen)
    assert hooked == [0] * 4 + [1] * 4 + [2] * 4
    out += 1  # an ordinary tensor, not an inference tensor


def test_sampler_input_validation():
    score = gaussian_level_score(1.0, MIXTURE_SIGMAS)
    with pytest.raises(ValueError):
        annealed_langevin(score, torch.zeros(2, 2), MIXTURE_SIGMAS, n_steps_each=1, eps=0.1, convention="edm")
    with pytest.raises(ValueError):
        annealed_langevin(score, torch.zeros(2, 2), MIXTURE_SIGMAS, n_steps_each=-1, eps=0.1)
    with pytest.raises(ValueError):
        annealed_langevin(score, torch.zeros(2, 2), MIXTURE_SIGMAS, n_steps_each=1, eps=0.1,
                          generator=make_generators([1, 2, 3]))


def test_progressive_checks_its_arguments_before_iterating():
    score = gaussian_level_score(1.0, MIXTURE_SIGMAS)
    with pytest.raises(ValueError):
        annealed_langevin_progressive(score, torch.zeros(2, 2), MIXTURE_SIGMAS, n_steps_each=1, eps=0.1,
                                      convention="edm")


def _technique4_ratio(u: float, steps: int, gamma: float) -> float:
    c = 2.0 / (2.0 - u)
    return (1.0 - u) ** (2 * steps) * (gamma ** 2 - c) + c


@pytest.mark.parametrize("steps", [1, 5, 20, 100])
def test_technique4_eps_minimises_the_variance_ratio(steps):
    sigmas = geometric_sigmas(1.0, 0.01, 10).tolist()
    gamma = sigmas[0] / sigmas[1]
    eps = technique4_eps(sigmas, steps)
    assert technique4_eps(sigmas, steps, "reference") == pytest.approx(eps / 2)
    u = eps / (2 * sigmas[-1] ** 2)
    best = _technique4_ratio(u, steps, gamma)
    assert best < gamma ** 2 and best >= 1.0
    assert best <= _technique4_ratio(0.9 * u, steps, gamma) and best <= _technique4_ratio(1.1 * u, steps, gamma)
    # more steps allow a smaller step and a ratio closer to 1
    assert technique4_eps(sigmas, 2 * steps) < eps


def test_technique4_ratio_is_what_the_sampler_does():
    """Point data, one level σ: from N(0, γ²σ²), T steps of the sampler leave variance σ² · ratio(u)."""
    sigma, gamma, steps = 0.5, 1.7, 4
    eps = technique4_eps([gamma * sigma, sigma], steps)
    x0 = gamma * sigma * torch.randn(40000, 1, generator=torch.Generator().manual_seed(11))
    x = annealed_langevin(lambda y, levels: -y / sigma ** 2, x0, torch.tensor([sigma]), n_steps_each=steps, eps=eps,
                          generator=torch.Generator().manual_seed(12))
    expected = _technique4_ratio(eps / (2 * sigma ** 2), steps, gamma)
    assert x.var().item() / sigma ** 2 == pytest.approx(expected, rel=0.03)


POINT_SIGMAS = torch.tensor([4.0, 2.0, 1.0])
POINT = torch.tensor([[1.5, -2.0]])


def _point_mass_score(calls: list[int]):
    """Exact score of the point mass at POINT on POINT_SIGMAS; records the level of every call."""
    def score(x, levels):
        calls.append(int(levels[0]))
        return -(x - POINT) / POINT_SIGMAS[levels][:, None] ** 2
    return score


@pytest.mark.parametrize("steps", [0, 3])
def test_predictor_corrector_lands_on_point_data_and_counts_evaluations(steps):
    """Exact score of a point mass at c: the last (denoising) predictor step returns c exactly."""
    calls = []
    score = _point_mass_score(calls)
    x0 = torch.rand(64, 2, generator=torch.Generator().manual_seed(13))
    x = predictor_corrector(score, x0, POINT_SIGMAS, n_steps_each=steps, eps=0.05,
                            generator=torch.Generator().manual_seed(14))
    torch.testing.assert_close(x, POINT.expand(64, 2), rtol=0, atol=1e-5)
    assert calls == [level for level in range(3) for _ in range(steps + 1)]


def test_ancestral_predictor_keeps_the_marginals_of_point_data():
    """Point mass at 0: x ~ N(0, σ_i²) goes to N(0, σ_{i+1}²) exactly (checked on the first of two levels)."""
    sigmas = torch.tensor([2.0, 0.5])
    seen = []

    def score(x, levels):
        seen.append(x.var().item())
        return -x / sigmas[levels][:, None] ** 2

    x0 = 2.0 * torch.randn(40000, 1, generator=torch.Generator().manual_seed(15))
    predictor_corrector(score, x0, sigmas, n_steps_each=0, eps=0.1, generator=torch.Generator().manual_seed(16))
    assert seen[1] == pytest.approx(0.25, rel=0.03)


@pytest.mark.parametrize("denoise", [True, False])
def test_progressive_predictor_corrector_yields_each_level_and_ends_where_the_sampler_does(denoise):
    """Levels 0..L−1 after their correctors, then L after the denoising step; without it the
    last predictor step (the only one that lands on σ = 0) is skipped: L·(T+1) − 1 evaluations."""
    calls = []
    score = _point_mass_score(calls)
    x0 = torch.rand(32, 2, generator=torch.Generator().manual_seed(17))
    steps = list(predictor_corrector_progressive(score, x0, POINT_SIGMAS, n_steps_each=2, eps=0.05, denoise=denoise,
                                                 generator=torch.Generator().manual_seed(18)))
    assert [level for level, _ in steps] == ([0, 1, 2, 3] if denoise else [0, 1, 2])
    assert len(calls) == 3 * 3 - (0 if denoise else 1)
    final = predictor_corrector(score, x0, POINT_SIGMAS, n_steps_each=2, eps=0.05, denoise=denoise,
                                generator=torch.Generator().manual_seed(18))
    torch.testing.assert_close(final, steps[-1][1], rtol=0, atol=0)
    if denoise:
        torch.testing.assert_close(final, POINT.expand(32, 2), rtol=0, atol=1e-5)
    else:  # still at noise level σ_L = 1 around the point: spread ≈ σ_L
        assert 0.5 < (final - POINT).std().item() < 1.5


def test_corrector_band_picks_the_levels_by_sigma() -> None:
    sigmas = [5.0, 1.0, 0.5, 0.1, 0.05]
    assert corrector_steps(sigmas, 2) == [2, 2, 2, 2, 2]
    assert corrector_steps(sigmas, 2, (0.1, 1.0)) == [0, 2, 2, 2, 0]  # both ends included
    assert corrector_steps(sigmas, 3, (0.2, 0.4)) == [0, 0, 0, 0, 0]


def test_predictor_corrector_corrects_only_inside_the_band_and_still_lands_on_point_data():
    """POINT_SIGMAS has three levels; a band around the middle one gives it T correctors and
    the others none: L + T evaluations, and the denoising step still returns the point."""
    calls = []
    score = _point_mass_score(calls)
    middle = float(POINT_SIGMAS[1])
    x0 = torch.rand(64, 2, generator=torch.Generator().manual_seed(19))
    x = predictor_corrector(score, x0, POINT_SIGMAS, n_steps_each=3, eps=0.05, corrector_sigmas=(middle, middle),
                            generator=torch.Generator().manual_seed(20))
    torch.testing.assert_close(x, POINT.expand(64, 2), rtol=0, atol=1e-5)
    assert calls == [0, 1, 1, 1, 1, 2]


def test_a_band_over_every_level_is_the_plain_sampler_and_an_empty_one_is_ancestral_sampling():
    score = gaussian_level_score(0.3, MIXTURE_SIGMAS)
    x0 = uniform_starts(200, 21)

    def run(steps: int, band):
        return predictor_corrector(score, x0, MIXTURE_SIGMAS, n_steps_each=steps, eps=0.05, corrector_sigmas=band,
                                   generator=torch.Generator().manual_seed(22))

    everything = (float(MIXTURE_SIGMAS[-1]), float(MIXTURE_SIGMAS[0]))
    torch.testing.assert_close(run(2, everything), run(2, None), rtol=0, atol=0)
    torch.testing.assert_close(run(2, (100.0, 200.0)), run(0, None), rtol=0, atol=0)
    assert not torch.equal(run(2, (2.0, 8.0)), run(2, None))
