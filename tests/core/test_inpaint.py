"""Inpainting (paper Algorithm 2) with exact scores."""

from __future__ import annotations

import pytest
import torch

from ncsn.core.inpaint import inpaint
from ncsn.core.rng import make_generators, rand_like
from ncsn.core.sampling import annealed_langevin
from ncsn.core.sigmas import geometric_sigmas

SIGMAS = geometric_sigmas(1.0, 0.01, 10)


pytestmark = pytest.mark.usefixtures("single_thread")


def pixel_score(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Exact score of independent pixels N(0.5, 0.1²) perturbed at σ_levels."""
    sigma = SIGMAS.to(x.dtype)[levels].reshape(-1, *([1] * (x.ndim - 1)))
    return -(x - 0.5) / (0.01 + sigma ** 2)


def images(seed: int = 0, n: int = 3) -> torch.Tensor:
    return torch.rand(n, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


def right_half_hidden(n: int = 3) -> torch.Tensor:
    mask = torch.ones(n, 1, 4, 4)
    mask[..., 2:] = 0
    return mask


def run(y, mask, seed=1, **kwargs):
    kwargs = {"n_steps_each": 5, "eps": 2e-5, **kwargs}
    return inpaint(pixel_score, y, mask, SIGMAS, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_observed_pixels_are_kept_exactly_and_hidden_ones_change():
    y, mask = images(), right_half_hidden()
    x0 = rand_like(y, torch.Generator().manual_seed(2))
    out = run(y, mask, x0=x0)
    observed = mask.expand_as(y).bool()
    assert torch.equal(out[observed], y[observed])
    assert not torch.isclose(out[~observed], x0[~observed]).any()
    assert not torch.isclose(out[~observed], y[~observed]).any()


def test_conditional_of_a_correlated_gaussian():
    """x ~ N(0, [[1, ρ], [ρ, 1]]); observing x₁ = y₁ leaves x₂ | y₁ ~ N(ρ y₁, 1 − ρ²).

    At the last level (σ = 0.05) Algorithm 2 targets x̃₂ | x̃₁ = y₁ + σ z under Σ + σ²I:
    mean ρ y₁/(1 + σ²) = 1.197, variance 0.366, close to the exact 1.2 and 0.36. The
    conditional variance does not shrink with σ here, so ε is large enough to mix at σ_L.
    """
    rho, y1, n = 0.8, 1.5, 4000
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    sigmas = geometric_sigmas(0.3, 0.05, 4).double()

    def score(x, levels):
        var = sigmas[levels] ** 2
        precision = torch.linalg.inv(cov[None] + var[:, None, None] * torch.eye(2, dtype=torch.float64))
        return -(precision @ x[:, :, None])[:, :, 0]

    y = torch.tensor([[y1, 0.0]], dtype=torch.float64).expand(n, 2)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    out = inpaint(score, y, mask, sigmas, n_steps_each=200, eps=0.01,
                  generator=torch.Generator().manual_seed(3))
    assert torch.equal(out[:, 0], y[:, 0])
    assert out[:, 1].mean().item() == pytest.approx(rho * y1, abs=0.03)
    assert out[:, 1].var().item() == pytest.approx(1 - rho ** 2, rel=0.06)


def test_all_observed_returns_y():
    y = images()
    assert torch.equal(run(y, torch.ones(1, 1, 4, 4)), y)


def test_all_missing_is_plain_annealed_sampling():
    y = images()
    x0 = rand_like(y, torch.Generator().manual_seed(4))
    out = run(y, torch.zeros(3, 1, 1, 1), x0=x0, seed=5)
    plain = annealed_langevin(pixel_score, x0, SIGMAS, n_steps_each=5, eps=2e-5,
                              generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, plain)


def test_bool_and_integer_masks_match_the_float_mask():
    y, mask = images(), right_half_hidden()
    ref = run(y, mask)
    assert torch.equal(run(y, mask.bool()), ref)
    assert torch.equal(run(y, mask.to(torch.uint8)), ref)


def test_default_start_is_uniform_noise_from_the_generator():
    y, mask = images(), right_half_hidden()
    assert torch.equal(run(y, mask, seed=6), run(y, mask, seed=6))
    gen = torch.Generator().manual_seed(6)
    x0 = rand_like(y, gen)
    explicit = inpaint(pixel_score, y, mask, SIGMAS, n_steps_each=5, eps=2e-5, generator=gen, x0=x0)
    assert torch.equal(run(y, mask, seed=6), explicit)


def test_per_example_generators_are_independent_of_the_batch():
    y, mask = images(n=4), right_half_hidden(n=4)
    full = inpaint(pixel_score, y, mask, SIGMAS, n_steps_each=3, eps=2e-5, generator=make_generators([0, 1, 2, 3]))
    one = inpaint(pixel_score, y[2:3], mask[2:3], SIGMAS, n_steps_each=3, eps=2e-5, generator=make_generators([2]))
    assert torch.equal(full[2:3], one)


@pytest.mark.parametrize("shape", [(3, 1, 4, 5), (2, 1, 4, 4), (4, 4, 1)])
def test_mask_that_does_not_broadcast_names_both_shapes(shape):
    with pytest.raises(ValueError, match=r"\(3, 2, 4, 4\)") as info:
        run(images(), torch.ones(shape))
    assert str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0])
def test_mask_values_must_be_zero_or_one(bad):
    mask = right_half_hidden()
    mask[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="0"):
        run(images(), mask)


def test_observed_pixels_hold_one_noisy_copy_per_level():
    """Algorithm 2: at level i every step after the first sees the same ỹ = y + σ_i z on the observed pixels."""
    y, mask = images(n=500), right_half_hidden(n=500)
    observed = mask.expand_as(y).bool()
    seen: dict[int, list[torch.Tensor]] = {}

    def score(x, levels):
        seen.setdefault(int(levels[0]), []).append(x[observed].clone())
        return torch.zeros_like(x)

    inpaint(score, y, mask, SIGMAS, n_steps_each=4, eps=2e-5, generator=torch.Generator().manual_seed(7))
    for level, xs in seen.items():
        assert len(xs) == 4
        assert all(torch.equal(xs[1], later) for later in xs[2:])
        noise = (xs[1] - y[observed]) / SIGMAS[level]
        assert noise.mean().item() == pytest.approx(0.0, abs=0.03)
        assert noise.std().item() == pytest.approx(1.0, rel=0.03)
    assert not torch.equal(seen[0][1], seen[1][1])


def test_predictor_corrector_inpainting_keeps_observed_pixels_and_matches_pc_when_nothing_is_observed():
    from ncsn.core.sampling import predictor_corrector

    y, mask = images(), right_half_hidden()
    out = run(y, mask, sampler="pc", denoise=True)
    observed = mask.expand_as(y).bool()
    assert torch.equal(out[observed], y[observed])
    assert not torch.isclose(out[~observed], y[~observed]).any()
    x0 = rand_like(y, torch.Generator().manual_seed(4))
    free = run(y, torch.zeros(3, 1, 1, 1), x0=x0, seed=5, sampler="pc", denoise=True)
    plain = predictor_corrector(pixel_score, x0, SIGMAS, n_steps_each=5, eps=2e-5, denoise=True,
                                generator=torch.Generator().manual_seed(5))
    assert torch.equal(free, plain)


def test_predictor_corrector_inpainting_clamps_after_each_predictor_step():
    """With pc, every corrector step and every predictor step landing on level i sees the ỹ of level i."""
    y, mask = images(n=200), right_half_hidden(n=200)
    observed = mask.expand_as(y).bool()
    seen: dict[int, list[torch.Tensor]] = {}

    def score(x, levels):
        seen.setdefault(int(levels[0]), []).append(x[observed].clone())
        return torch.zeros_like(x)

    inpaint(score, y, mask, SIGMAS, n_steps_each=2, eps=2e-5, sampler="pc",
            generator=torch.Generator().manual_seed(7))
    for level, xs in seen.items():
        if level > 0:  # the predictor step into the level already set the observed pixels to its ỹ
            assert all(torch.equal(xs[0], later) for later in xs[1:]), level
        noisy = (xs[-1] - y[observed]).std().item()
        assert noisy == pytest.approx(SIGMAS[level].item(), rel=0.1)
