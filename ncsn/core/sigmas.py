"""Noise levels σ₁ > σ₂ > … > σ_L.

* :func:`geometric_sigmas`: the paper's geometric sequence.
* :func:`karras_sigmas`: EDM's schedule for the ODE/SDE solvers (Karras et al. 2022, Eq. 5),
  with σ = 0 appended.
* :func:`max_pairwise_distance`: NCSNv2 technique 1, σ₁ ≈ the largest Euclidean
  distance between two training points.
* :func:`technique2_overlap`, :func:`technique2_ratio`, :func:`num_levels_for_dim`:
  NCSNv2 technique 2, the ratio γ = σ_{i−1}/σ_i with
  Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) ≈ 0.5, and the L it implies.

About technique 2 and the NCSNv2 paper's numbers: solving the equation exactly
with target 0.5 gives γ ≈ 1.0398 for CIFAR-10 (D = 3072) and L = 220 from σ₁ = 50
to σ_L = 0.01. The paper's L = 232 has γ = 5000^(1/231) ≈ 1.0376, whose overlap
is ≈ 0.567, not 0.5; its other published schedules (CelebA 64², LSUN 96²/128²,
FFHQ 256²) share that same overlap ≈ 0.567. ``target`` is therefore a parameter.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_sigma_range(sigma_begin: float, sigma_end: float) -> None:
    """The one check of a σ range: both finite and σ₁ > σ_L > 0.

    :raises ValueError: naming both values.
    """
    if not (math.isfinite(sigma_begin) and math.isfinite(sigma_end)) or not sigma_begin > sigma_end > 0:
        raise ValueError(f"need sigma_begin > sigma_end > 0, got sigma_begin={sigma_begin}, sigma_end={sigma_end}")


def geometric_sigmas(sigma_begin: float, sigma_end: float, num_levels: int) -> Tensor:
    """σ_i = σ₁ · (σ_L/σ₁)^((i−1)/(L−1)), i = 1..L (computed in float64).

    :param sigma_begin: σ₁, the largest level.
    :param sigma_end: σ_L, the smallest level; ``sigma_begin > sigma_end > 0``.
    :param num_levels: L ≥ 1; L = 1 gives ``[sigma_begin]``.
    :return: [L] float32, strictly descending, first and last entries exactly σ₁ and σ_L
        (as float32).
    """
    if isinstance(num_levels, bool) or int(num_levels) != num_levels or num_levels < 1:
        raise ValueError(f"num_levels must be an integer >= 1, got {num_levels!r}")
    check_sigma_range(sigma_begin, sigma_end)
    num_levels = int(num_levels)
    log_sigmas = torch.linspace(math.log(sigma_begin), math.log(sigma_end), num_levels, dtype=torch.float64)
    sigmas = log_sigmas.exp()
    sigmas[0] = sigma_begin
    if num_levels > 1:
        sigmas[-1] = sigma_end
    return sigmas.float()


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """EDM's noise schedule (Karras et al. 2022, Eq. 5), then 0:

        σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,  i = 0..n−1;   σ_n = 0.

    ρ = 7 spends the steps near σ_min, where the samples' detail forms; ρ = 1 is uniform in σ
    and ρ → ∞ geometric. Computed in float64; σ_0 and σ_{n−1} are exactly σ_max and σ_min.

    :param n: the number of non-zero levels, n ≥ 1 (n = 1 gives ``[sigma_max, 0]``).
    :param sigma_min: / :param sigma_max: the range, ``sigma_max >= sigma_min > 0``.
    :param rho: ρ > 0.
    :param dtype: of the result (float64 for the known-answer tests).
    :return: [n + 1] descending, ending in 0.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not (math.isfinite(sigma_max) and sigma_max >= sigma_min > 0):
        raise ValueError(f"need sigma_max >= sigma_min > 0, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    n = int(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0] = sigma_max
    if n > 1:
        sigmas[-1] = sigma_min
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


def max_pairwise_distance(x: Tensor, *, chunk_size: int = 1024) -> float:
    """max_{j,k} ‖x_j − x_k‖₂ over the rows of ``x`` (flattened).

    The search runs in float32: squared distances ‖a‖² + ‖b‖² − 2 a·b over blocks of
    ``chunk_size`` × ``chunk_size`` rows (upper triangle only), so the working memory is
    O(chunk_size² + N) values beyond ``x`` itself and 60,000 MNIST images take seconds, not
    minutes. The winning pair's distance is then recomputed exactly in float64.

    :param x: [N, ...] data set; N < 2 gives 0.0.
    :param chunk_size: rows per block.
    :return: the largest distance, a Python float.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[0]
    if n < 2:
        return 0.0
    sq_norms = torch.cat([flat[i:i + chunk_size].float().pow(2).sum(1) for i in range(0, n, chunk_size)])
    best, pair = -math.inf, (0, 1)
    for i in range(0, n, chunk_size):
        a = flat[i:i + chunk_size].float()
        for j in range(i, n, chunk_size):
            b = flat[j:j + chunk_size].float()
            sq = torch.addmm(sq_norms[i:i + chunk_size, None] + sq_norms[None, j:j + chunk_size], a, b.T,
                             alpha=-2.0)
            value, where = sq.flatten().max(0)
            if value.item() > best:
                best, pair = value.item(), (i + where.item() // sq.shape[1], j + where.item() % sq.shape[1])
    return (flat[pair[0]].double() - flat[pair[1]].double()).norm().item()


def _normal_cdf(t: float) -> float:
    """Φ(t), the standard normal CDF."""
    return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))


def technique2_overlap(dim: int, ratio: float) -> float:
    """C(γ) = Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) (NCSNv2, technique 2).

    With x ~ N(0, σ_i² I) in D dimensions, ‖x‖ ≈ N(√D σ_i, σ_i²/2); C is the probability
    that ‖x‖ falls within 3 standard deviations of the typical norm √D σ_{i−1} of the
    previous level, where γ = σ_{i−1}/σ_i. It decreases from 0.9973 at γ = 1 towards 0.

    :param dim: D, the data dimension.
    :param ratio: γ ≥ 1.
    """
    root = math.sqrt(2.0 * dim)
    return _normal_cdf(root * (ratio - 1.0) + 3.0 * ratio) - _normal_cdf(root * (ratio - 1.0) - 3.0 * ratio)


def technique2_ratio(dim: int, *, target: float = 0.5, tol: float = 1e-12) -> float:
    """The ratio γ > 1 with ``technique2_overlap(dim, γ) = target``, by bisection.

    :param dim: D ≥ 1, the data dimension.
    :param target: the overlap C, in (0, 0.9973).
    :return: γ as a Python float, within ``tol``.
    """
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    if not 0.0 < target < technique2_overlap(dim, 1.0):
        raise ValueError(f"target must lie in (0, {technique2_overlap(dim, 1.0):.4f}), got {target}")
    lo, hi = 1.0, 2.0
    while technique2_overlap(dim, hi) > target:
        if hi > 1e6:  # √(2D) ≤ 3: C does not decay to 0
            raise ValueError(f"no ratio reaches overlap {target} in dimension {dim}")
        lo, hi = hi, 2.0 * hi
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if technique2_overlap(dim, mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def num_levels_for_dim(dim: int, sigma_begin: float, sigma_end: float, *, target: float = 0.5) -> int:
    """L for a geometric schedule from σ₁ to σ_L whose ratio is at most γ = technique2_ratio(D).

    L = ⌈log(σ₁/σ_L) / log γ⌉ + 1: the fewest levels whose consecutive overlap is at least
    ``target`` (a ratio within 1e-9 of γ counts as γ).

    :param dim: D, the data dimension (e.g. 3 × 32 × 32).
    :param sigma_begin: σ₁ > σ_L.
    :param sigma_end: σ_L > 0.
    :param target: the overlap C (NCSNv2: ≈ 0.5; see the module docstring).
    :raises ValueError: for a bad σ range (:func:`check_sigma_range`), or a D in which no
        ratio reaches ``target``.
    """
    check_sigma_range(sigma_begin, sigma_end)
    gamma = technique2_ratio(dim, target=target)
    intervals = math.log(sigma_begin / sigma_end) / math.log(gamma)
    return math.ceil(intervals - 1e-9 * max(1.0, intervals)) + 1
