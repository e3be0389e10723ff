"""95 % bootstrap intervals for IS, FID and KID, from the features the metrics were computed on.

Each resample draws the sample features and the real features with replacement (N of N, M of M)
and recomputes the metric with torch-fidelity's own formulas. FID is biased upwards at small N,
and a resample (with its repeated points) is more so, so the percentile interval sits above the
value it should cover (it covered the true FID in 49 % of trials on a synthetic problem,
tests/evaluation/test_bootstrap.py). The *basic* bootstrap interval reflects the resamples
about the estimate, [2θ̂ − q₉₇.₅, 2θ̂ − q₂.₅], which removes that bias to first order (92 % there).

:func:`bootstrap_intervals` returns ``{prefix}{is,fid,kid_mean}_ci95: [low, high]``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

LEVEL = 0.95
KID_SUBSETS = 10  # per resample (torch-fidelity's default of 100 costs 10x and narrows nothing here)
Metric = Callable[[Tensor, Tensor], float]  # (sample features, real features) → value


def fid_of_features(generated: Tensor, real: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets [N, F], [M, F]."""
    stats = fid_features_to_statistics(generated.double()), fid_features_to_statistics(real.double())
    return fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID]


def basic_interval(estimate: float, replicates: np.ndarray, level: float = LEVEL) -> list[float]:
    """[2θ̂ − q_(1+level)/2, 2θ̂ − q_(1−level)/2] of the bootstrap replicates."""
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return [float(2 * estimate - hi), float(2 * estimate - lo)]


def bootstrap_interval(metric: Metric, generated: Tensor, real: Tensor, *, resamples: int,
                       generator: np.random.Generator, level: float = LEVEL, floor: float | None = None) -> list[float]:
    """The basic bootstrap interval of ``metric(generated, real)``.

    :param generated: [N, F] sample features; :param real: [M, F] real features.
    :param floor: the smallest value the metric can take (0 for FID): the interval is clipped to it.
    """
    estimate = metric(generated, real)
    replicates = np.empty(resamples)
    for b in range(resamples):
        i = torch.from_numpy(generator.integers(0, len(generated), len(generated)))
        j = torch.from_numpy(generator.integers(0, len(real), len(real)))
        replicates[b] = metric(generated[i], real[j])
    interval = basic_interval(estimate, replicates, level)
    return [max(v, floor) for v in interval] if floor is not None else interval


def bootstrap_intervals(generated: dict[str, Tensor], real: dict[str, Tensor], *, prefix: str, fid_layer: str,
                        isc_layer: str | None, kid_subset_size: int, resamples: int, seed: int) -> dict[str, list[float]]:
    """``{prefix}fid_ci95``, ``{prefix}kid_mean_ci95`` and (with ``isc_layer``) ``{prefix}is_ci95``.

    :param generated: / :param real: ``{layer: [N or M, F] features}`` of the samples and of the real set.
    :param isc_layer: the layer of class logits (None: no IS).
    :param kid_subset_size: KID's subset size (at most the smaller set's size; below 2: no KID interval).
    :param seed: the resampling's seed (numpy's PCG64).
    """
    rng = np.random.default_rng(seed)
    g, r = generated[fid_layer], real[fid_layer]
    size = min(kid_subset_size, len(g), len(r))

    def kid(a: Tensor, b: Tensor) -> float:
        return kid_features_to_metric(a, b, kid_subsets=KID_SUBSETS, kid_subset_size=size, rng_seed=seed,
                                      verbose=False)[KEY_METRIC_KID_MEAN]

    out = {f"{prefix}fid_ci95": bootstrap_interval(fid_of_features, g, r, resamples=resamples, generator=rng, floor=0.0)}
    if size >= 2:
        out[f"{prefix}kid_mean_ci95"] = bootstrap_interval(kid, g, r, resamples=resamples, generator=rng)
    if isc_layer is not None:
        logits = generated[isc_layer]
        splits = max(1, min(10, len(logits)))

        def inception_score(a: Tensor, _: Tensor) -> float:
            return isc_features_to_metric(a, splits=splits, shuffle=True, rng_seed=seed)[KEY_METRIC_ISC_MEAN]

        out[f"{prefix}is_ci95"] = bootstrap_interval(inception_score, logits, logits, resamples=resamples,
                                                     generator=rng, floor=1.0)
    return out
