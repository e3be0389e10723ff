"""Noise levels: the geometric schedule and NCSNv2 techniques 1 and 2."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core.sigmas import (geometric_sigmas, max_pairwise_distance, num_levels_for_dim, technique2_overlap,
                         technique2_ratio)


def test_geometric_endpoints_ratio_and_order():
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (10,)
    assert sigmas[0].item() == pytest.approx(1.0, abs=0) and sigmas[-1].item() == torch.tensor(0.01).item()
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    ratios = sigmas.double()[1:] / sigmas.double()[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, 0.01 ** (1 / 9)), rtol=1e-6)
    assert ratios[0].item() == pytest.approx(0.5995, abs=1e-4)  # the paper's ratio


def test_geometric_is_computed_in_float64():
    sigmas = geometric_sigmas(50.0, 0.01, 232)
    exact = torch.tensor([50.0 * (0.01 / 50.0) ** (i / 231) for i in range(232)], dtype=torch.float64)
    assert torch.equal(sigmas, exact.float())


def test_geometric_single_level():
    assert geometric_sigmas(3.0, 1.0, 1).tolist() == [3.0]


@pytest.mark.parametrize("args", [(1.0, 1.0, 5), (0.01, 1.0, 5), (1.0, 0.0, 5), (1.0, -1.0, 5), (1.0, 0.1, 0),
                                  (1.0, 0.1, 2.5), (float("nan"), 0.1, 3), (float("inf"), 0.1, 3)])
def test_geometric_rejects_bad_input(args):
    with pytest.raises(ValueError):
        geometric_sigmas(*args)


def test_technique2_overlap_known_values():
    assert technique2_overlap(3072, 1.0) == pytest.approx(math.erf(3 / math.sqrt(2)), abs=1e-12)  # Φ(3) − Φ(−3)
    values = [technique2_overlap(3072, 1.0 + 0.01 * k) for k in range(10)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_technique2_ratio_solves_the_equation():
    gamma = technique2_ratio(3072)
    assert technique2_overlap(3072, gamma) == pytest.approx(0.5, abs=1e-9)
    assert gamma == pytest.approx(1.03980, abs=1e-5)
    # higher dimension → closer levels
    assert 1.0 < technique2_ratio(12288) < gamma


def test_num_levels_cifar10_from_the_equation():
    """Solving C(γ) = 0.5 exactly: γ ≈ 1.0398, 218.25 ratios from 50 to 0.01, so L = 220."""
    assert num_levels_for_dim(3072, 50.0, 0.01) == 220


def test_num_levels_cifar10_paper_232():
    """The NCSNv2 paper's L = 232 (CIFAR-10, σ₁ = 50, σ_L = 0.01) is the overlap C ≈ 0.567, not 0.5;
    its other published schedules share that overlap; at that overlap the count gives 232."""
    published = [(3072, 50.0, 232), (12288, 90.0, 500), (27648, 140.0, 788), (49152, 190.0, 1086),
                 (196608, 348.0, 2311)]
    overlaps = [technique2_overlap(d, (s1 / 0.01) ** (1 / (n - 1))) for d, s1, n in published]
    assert all(abs(c - 0.567) < 0.002 for c in overlaps)
    assert num_levels_for_dim(3072, 50.0, 0.01, target=overlaps[0]) == 232
    assert num_levels_for_dim(3072, 50.0, 0.01, target=0.567) == 233  # slightly more overlap → one more level


@pytest.mark.parametrize("dim,s1,sl", [(784, 1.0, 0.01), (3072, 50.0, 0.01), (100, 10.0, 0.1)])
def test_num_levels_is_the_fewest_with_enough_overlap(dim, s1, sl):
    n = num_levels_for_dim(dim, s1, sl)
    assert technique2_overlap(dim, (s1 / sl) ** (1 / (n - 1))) >= 0.5
    assert technique2_overlap(dim, (s1 / sl) ** (1 / (n - 2))) < 0.5


def test_technique2_rejects_bad_input():
    with pytest.raises(ValueError):
        technique2_ratio(1)  # √(2D) < 3: C never reaches 0.5
    with pytest.raises(ValueError):
        technique2_ratio(3072, target=0.999)
    with pytest.raises(ValueError):
        num_levels_for_dim(3072, 0.01, 50.0)


def test_max_pairwise_distance_matches_cdist_for_any_chunk():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(301, 3, 4, 4, generator=gen) * 3 + 1
    flat = x.reshape(301, -1).double()
    brute = torch.cdist(flat, flat).max().item()
    for chunk in (1, 7, 64, 301, 4096):
        assert max_pairwise_distance(x, chunk_size=chunk) == pytest.approx(brute, rel=1e-12)


def test_max_pairwise_distance_edge_cases():
    assert max_pairwise_distance(torch.zeros(1, 5)) == 0.0
    assert max_pairwise_distance(torch.ones(50, 5), chunk_size=8) == 0.0  # clamped at 0, no NaN
    pair = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert max_pairwise_distance(pair) == pytest.approx(5.0, abs=1e-12)
    assert max_pairwise_distance(torch.randint(0, 256, (20, 3, 2, 2), dtype=torch.uint8)) > 0
