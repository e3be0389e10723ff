"""The samplers' common signature with exact denoisers: the probability-flow ODE solvers converge at their
order on a Gaussian, every sampler keeps a mixture's weights, and the samples depend only on the seed."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core.rng import make_generators
from ncsn.core.sampling import (SAMPLERS, ald, dpmpp_2m, euler, heun, karras_sigmas, pc, progressive, sample,
                                technique4_eps)
from ncsn.core.sampling.denoiser import denoiser_from_levels, level_score
from ncsn.core.sampling.probability_flow import churn_gamma
from ncsn.core.sigmas import geometric_sigmas
from ncsn.core.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("single_thread")

MU, S = torch.tensor([1.5, -1.5], dtype=torch.float64), 0.7
GAUSSIAN = GaussianMixture(torch.ones(1, dtype=torch.float64), MU[None], torch.tensor([S], dtype=torch.float64))
# 1/5 · N(−3, 0.5²) + 4/5 · N(3, 0.5²)
MIXTURE = GaussianMixture(torch.tensor([0.2, 0.8]), torch.tensor([[-3.0], [3.0]]), torch.tensor([0.5, 0.5]))
N_MIX, SIGMA_MAX = 4000, 20.0


def exact_flow(x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
    """The PF-ODE of N(μ, s² I) in closed form: x − μ scales with √(s² + σ²)."""
    return MU + (x - MU) * math.sqrt((S ** 2 + sigma_to ** 2) / (S ** 2 + sigma_from ** 2))


def gaussian_starts() -> torch.Tensor:
    return 3.0 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def solve_error(fn, n: int, sigma_min: float = 0.05, sigma_max: float = 3.0) -> float:
    """Max error of ``fn`` with n steps from σ_max to σ_min (no step to 0) against the exact flow."""
    sigmas = karras_sigmas(n, sigma_min, sigma_max, dtype=torch.float64)[:-1]
    x0 = gaussian_starts()
    return (fn(GAUSSIAN.denoiser, x0, sigmas) - exact_flow(x0, sigma_max, sigma_min)).abs().max().item()


@pytest.mark.parametrize(("fn", "order"), [(euler, 1), (heun, 2), (dpmpp_2m, 2)])
def test_probability_flow_solvers_converge_at_their_order_on_a_gaussian(fn, order: int) -> None:
    """Halving the step divides the error by 2^order (measured: Euler 2.03, 2.02; Heun 4.37, 4.18;
    DPM-Solver++(2M) 4.39, 4.20, from 16 to 32 to 64 steps)."""
    errors = [solve_error(fn, n) for n in (16, 32, 64)]
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(2 ** order * 0.85 < r < 2 ** order * 1.25 for r in ratios), (errors, ratios)
    assert errors[-1] < (0.04 if order == 1 else 1.5e-3)


@pytest.mark.parametrize("fn", [euler, heun, dpmpp_2m])
def test_the_step_to_zero_lands_on_the_denoiser(fn) -> None:
    """On a schedule ending in 0 the last step is x_n = D(x_{n−1}; σ_{n−1}): Tweedie's estimate."""
    sigmas = karras_sigmas(6, 0.05, 3.0, dtype=torch.float64)
    x0 = gaussian_starts()
    before = fn(GAUSSIAN.denoiser, x0, sigmas[:-1])
    torch.testing.assert_close(fn(GAUSSIAN.denoiser, x0, sigmas), GAUSSIAN.denoiser(before, sigmas[-2]))


def test_karras_schedule_has_its_ends_and_rho_spacing() -> None:
    sigmas = karras_sigmas(18, 0.01, 5.0, rho=7.0, dtype=torch.float64)
    assert len(sigmas) == 19 and sigmas[0] == 5.0 and sigmas[-2] == 0.01 and sigmas[-1] == 0
    root = sigmas[:-1] ** (1 / 7)
    torch.testing.assert_close(root.diff(), torch.full((17,), float(root[1] - root[0]), dtype=torch.float64))
    assert karras_sigmas(1, 0.01, 5.0).tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match="sigma_max >= sigma_min > 0"):
        karras_sigmas(5, 1.0, 0.1)


def test_heun_counts_2n_minus_1_evaluations_and_euler_n() -> None:
    calls: list[float] = []

    def counted(x, sigma):
        calls.append(float(sigma[0]))
        return GAUSSIAN.denoiser(x, sigma)

    sigmas = karras_sigmas(5, 0.05, 3.0, dtype=torch.float64)
    heun(counted, gaussian_starts(), sigmas)
    assert len(calls) == 2 * 5 - 1 and 0.0 not in calls
    calls.clear()
    for fn in (euler, dpmpp_2m):
        fn(counted, gaussian_starts(), sigmas)
        assert len(calls) == 5
        calls.clear()


def test_churn_follows_edm_algorithm_2() -> None:
    assert churn_gamma(1.0, 10, churn=2.0, s_tmin=0.05, s_tmax=50.0) == pytest.approx(0.2)
    assert churn_gamma(1.0, 10, churn=40.0, s_tmin=0.05, s_tmax=50.0) == pytest.approx(math.sqrt(2) - 1)
    assert churn_gamma(0.01, 10, churn=40.0, s_tmin=0.05, s_tmax=50.0) == 0.0
    assert churn_gamma(60.0, 10, churn=40.0, s_tmin=0.05, s_tmax=50.0) == 0.0
    sigmas = karras_sigmas(8, 0.05, 3.0, dtype=torch.float64)
    x0 = gaussian_starts()
    calls: list[float] = []
    heun(lambda x, s: calls.append(float(s[0])) or GAUSSIAN.denoiser(x, s), x0, sigmas, churn=2.0,
         generator=torch.Generator().manual_seed(0))
    assert calls[0] == pytest.approx(3.0 * 1.25)  # σ̂_0 = σ_0 (1 + S_churn/N)
    assert not torch.equal(heun(GAUSSIAN.denoiser, x0, sigmas, churn=4.0, generator=torch.Generator().manual_seed(0)),
                           heun(GAUSSIAN.denoiser, x0, sigmas))


def mixture_starts(seed: int = 10) -> torch.Tensor:
    """N_MIX draws of the mixture blurred by σ_max: the exact p_σmax the samplers start from."""
    gen = torch.Generator().manual_seed(seed)
    return MIXTURE.sample(N_MIX, generator=gen) + SIGMA_MAX * torch.randn(N_MIX, 1, generator=gen)


LEVELS_ALD = geometric_sigmas(SIGMA_MAX, 0.5, 10)
LEVELS_PC = geometric_sigmas(SIGMA_MAX, 0.02, 20)
MIXTURE_CASES = {
    "euler": ("euler", karras_sigmas(18, 0.02, SIGMA_MAX), {}),
    "heun": ("heun", karras_sigmas(18, 0.02, SIGMA_MAX), {}),
    "heun+churn": ("heun", karras_sigmas(18, 0.02, SIGMA_MAX), {"churn": 20.0, "s_tmin": 0.05, "s_tmax": 10.0}),
    "dpmpp_2m": ("dpmpp_2m", karras_sigmas(18, 0.02, SIGMA_MAX), {}),
    "ald": ("ald", LEVELS_ALD, {"n_steps_each": 100, "eps": 0.1, "denoise": True}),
    "pc": ("pc", LEVELS_PC, {"n_steps_each": 5, "eps": technique4_eps(LEVELS_PC.tolist(), 5), "denoise": True}),
}


@pytest.mark.parametrize("case", list(MIXTURE_CASES))
def test_every_sampler_keeps_the_mixture_weights(case: str) -> None:
    """From p_σmax, the samplers land 1/5 of the mass in the small mode, within 4 binomial standard
    errors of 4,000 draws (±0.025). Measured, seed 10: euler 0.189 (first order at 18 steps), heun 0.201,
    heun with churn 0.206, dpmpp_2m 0.200, ald 0.206, pc 0.199."""
    name, sigmas, options = MIXTURE_CASES[case]
    x = sample(name, MIXTURE.denoiser, mixture_starts(), sigmas, generator=torch.Generator().manual_seed(0),
               **options)
    weight = (x < 0).float().mean().item()
    assert weight == pytest.approx(0.2, abs=4 * math.sqrt(0.2 * 0.8 / N_MIX)), weight
    assert ((x.abs() - 3.0).abs() < 2.0).float().mean() > 0.99  # near the modes, not between them


@pytest.mark.parametrize("case", ["heun+churn", "pc", "ald"])
def test_same_seed_same_samples_whatever_the_batch(case: str) -> None:
    name, sigmas, options = MIXTURE_CASES[case]
    options = {**options, "n_steps_each": 3} if "n_steps_each" in options else options
    x0 = mixture_starts()[:6]
    whole = sample(name, MIXTURE.denoiser, x0, sigmas, generator=make_generators(range(6)), **options)
    again = sample(name, MIXTURE.denoiser, x0, sigmas, generator=make_generators(range(6)), **options)
    part = sample(name, MIXTURE.denoiser, x0[2:], sigmas, generator=make_generators(range(2, 6)), **options)
    assert torch.equal(whole, again)
    torch.testing.assert_close(part, whole[2:], rtol=0, atol=1e-6)
    other = sample(name, MIXTURE.denoiser, x0, sigmas, generator=make_generators(range(10, 16)), **options)
    assert not torch.equal(other, whole)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_the_callback_sees_each_sigma_and_can_replace_the_state(name: str) -> None:
    """callback(x, σ) after each step at the σ reached; a returned tensor is the state from then on."""
    levels = geometric_sigmas(3.0, 0.05, 4).double()
    sigmas, options = (karras_sigmas(4, 0.05, 3.0, dtype=torch.float64), {})
    if name in ("ald", "pc"):
        sigmas, options = levels, {"n_steps_each": 2, "eps": 1e-3}
    seen: list[float] = []

    def pin_first(x: torch.Tensor, sigma: float) -> torch.Tensor:
        seen.append(sigma)
        x = x.clone()
        x[:, 0] = 7.0
        return x

    x = sample(name, GAUSSIAN.denoiser, gaussian_starts(), sigmas, generator=torch.Generator().manual_seed(0),
               callback=pin_first, **options)
    if name in ("ald", "pc"):
        assert set(seen) == set(levels.tolist())
    else:
        assert seen == sigmas[1:].tolist()
        assert bool((x[:, 0] == 7.0).all())


def test_progressive_yields_each_step_and_ends_at_the_sample() -> None:
    sigmas = karras_sigmas(5, 0.05, 3.0, dtype=torch.float64)
    steps = list(progressive("heun", GAUSSIAN.denoiser, gaussian_starts(), sigmas))
    assert [i for i, _ in steps] == [0, 1, 2, 3, 4]
    assert torch.equal(steps[-1][1], heun(GAUSSIAN.denoiser, gaussian_starts(), sigmas))
    with pytest.raises(ValueError, match="sampler must be one of 'ald', 'pc', 'euler', 'heun', 'dpmpp_2m'"):
        progressive("ddim", GAUSSIAN.denoiser, gaussian_starts(), sigmas)
    with pytest.raises(ValueError, match="strictly descending"):
        heun(GAUSSIAN.denoiser, gaussian_starts(), sigmas.flip(0))


def test_ald_and_pc_on_a_denoiser_are_the_score_samplers_on_its_score() -> None:
    """The wrappers read s(x, i) = (D(x; σ_i) − x)/σ_i²: the same chains as the score-level functions."""
    from ncsn.core.sampling import annealed_langevin, predictor_corrector

    levels = geometric_sigmas(3.0, 0.05, 4).double()
    score = GAUSSIAN.level_score(levels)
    x0 = gaussian_starts()
    for wrapper, direct in ((ald, annealed_langevin), (pc, predictor_corrector)):
        got = wrapper(GAUSSIAN.denoiser, x0, torch.cat([levels, levels.new_zeros(1)]), n_steps_each=3, eps=1e-3,
                      generator=torch.Generator().manual_seed(1), denoise=True)
        want = direct(score, x0, levels, n_steps_each=3, eps=1e-3, generator=torch.Generator().manual_seed(1),
                      denoise=True)
        torch.testing.assert_close(got, want)
    x, idx = gaussian_starts(), torch.tensor([0, 3] * 32)
    torch.testing.assert_close(level_score(GAUSSIAN.denoiser, levels)(x, idx), score(x, idx))


def test_a_level_network_takes_its_levels_and_names_them_for_another_sigma() -> None:
    levels = geometric_sigmas(1.0, 0.01, 3)
    calls: list[str] = []
    by_level = lambda x, i: calls.append("level") or -x / (1 + levels[i][:, None] ** 2)  # noqa: E731
    by_sigma = lambda x, s: calls.append("sigma") or -x / (1 + s[:, None] ** 2)  # noqa: E731
    x = torch.randn(4, 2)
    both = denoiser_from_levels(by_level, levels, by_sigma)
    torch.testing.assert_close(both(x, torch.full((4,), 0.1)), both(x, torch.full((4,), 0.1 * (1 + 1e-7))))
    both(x, torch.full((4,), 0.3))
    assert calls == ["level", "level", "sigma"]
    only_levels = denoiser_from_levels(by_level, levels, name="model.arch 'ncsn'")
    assert only_levels(x, torch.full((4,), 0.01)).shape == x.shape
    with pytest.raises(ValueError, match=r"^sigma = 0\.3 is not a noise level of this network \(model\.arch 'ncsn'"
                                         r" takes only its trained levels: 1, 0\.1, 0\.01\)$"):
        only_levels(x, torch.full((4,), 0.3))
