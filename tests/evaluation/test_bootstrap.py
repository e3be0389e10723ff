"""The bootstrap intervals of FID / KID / IS: nominal coverage of the true FID on a synthetic problem,
and the keys, order and determinism of the intervals the evaluate stage writes."""

from __future__ import annotations

import numpy as np
import torch

from ncsn.evaluation.bootstrap import bootstrap_interval, bootstrap_intervals, fid_of_features

DIM, N = 4, 400
SHIFT = 0.3  # the two Gaussians differ by this in one coordinate: their true FID is SHIFT²


def test_the_interval_covers_the_true_fid_at_about_its_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    trials, covered = 100, 0
    for _ in range(trials):
        generated = torch.from_numpy(rng.normal(size=(N, DIM)) + np.eye(DIM)[0] * SHIFT)
        real = torch.from_numpy(rng.normal(size=(N, DIM)))
        low, high = bootstrap_interval(fid_of_features, generated, real, resamples=100, generator=rng, floor=0.0)
        covered += low <= SHIFT**2 <= high
    # 95 % nominal; 100 trials give a binomial standard error of about 2 points
    assert 0.86 <= covered / trials <= 1.0, covered


def _features(seed: int, n: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"feat": torch.randn(n, 8, generator=gen, dtype=torch.float64),
            "logits": torch.randn(n, 10, generator=gen, dtype=torch.float64) * 3}


def test_intervals_are_named_ordered_and_follow_the_seed() -> None:
    generated, real = _features(0, 200), _features(1, 300)
    kwargs = dict(prefix="classifier_", fid_layer="feat", isc_layer="logits", kid_subset_size=100, resamples=30)
    a = bootstrap_intervals(generated, real, seed=0, **kwargs)
    assert set(a) == {"classifier_fid_ci95", "classifier_kid_mean_ci95", "classifier_is_ci95"}
    assert all(low < high for low, high in a.values())
    assert a["classifier_fid_ci95"][0] >= 0.0 and a["classifier_is_ci95"][0] >= 1.0
    assert a == bootstrap_intervals(generated, real, seed=0, **kwargs)
    assert a != bootstrap_intervals(generated, real, seed=1, **kwargs)
    without_is = bootstrap_intervals(generated, real, seed=0, **{**kwargs, "isc_layer": None})
    assert "classifier_is_ci95" not in without_is
