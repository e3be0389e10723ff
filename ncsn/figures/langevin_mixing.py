"""Paper Fig. 3: plain Langevin dynamics gets the mixture weights wrong, annealed Langevin recovers them.

p = 1/5 N((−5,−5), I) + 4/5 N((5,5), I). In a region where one component dominates, ∇ log p
does not depend on the weights, so Langevin chains started uniformly on [−8, 8]² stay in the
mode of their half-plane (≈ 1/2 each) for any practical number of steps. Annealing from
σ₁ = 20, where the two modes are one blob, moves the right fraction of chains to each mode
before the noise shrinks.

Settings of the known-answer tests in tests/core/test_sampling.py, with fewer chains:
σ geometric from 20 to 1 over L = 10 levels; annealed Langevin with ε = 0.1 (paper
convention α_i = ε σ_i²/σ_L²) and T = ``figures.n_steps_each``; plain Langevin with step
α = 0.1 for L·T steps (the same number of score evaluations). Panels use exact scores
(``mixture.score``) and a :class:`~ncsn.models.LevelMLP` trained by denoising score matching
(:func:`ncsn.core.losses.dsm_loss`) on samples of p; plain Langevin with the learned network uses
its smallest level, s_θ(x, σ_L). Annealed chains end at σ_L = 1, so they sample p ∗ N(0, I)
(components of std √2, the same weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ncsn.config import FiguresConfig
from ncsn.figures.common import pyplot, save_figure
from ncsn.figures.toy_training import SMALL_MODE, small_mode_weight, train_toy_score, uniform_box
from ncsn.core.losses import dsm_loss
from ncsn.models import LevelMLP
from ncsn.core.sampling import annealed_langevin, langevin
from ncsn.core.sigmas import geometric_sigmas
from ncsn.core.toy import GaussianMixture, paper_mixture

SIGMA_BEGIN, SIGMA_END, NUM_LEVELS = 20.0, 1.0, 10
EPS = 0.1  # annealed Langevin, paper convention
STEP_SIZE = 0.1  # plain Langevin α
TRUE_WEIGHT = 0.2

PANELS = {
    "exact_samples": "exact samples of p",
    "plain_exact": "Langevin, exact scores",
    "annealed_exact": "annealed Langevin, exact scores\n(ends at σ_L = 1: samples p ∗ N(0, I))",
    "plain_learned": "Langevin, learned s_θ(x, σ_L)",
    "annealed_learned": "annealed Langevin, learned s_θ (DSM)",
}


@dataclass
class LangevinMixing:
    """The points of every panel ([N, 2] each, keys of :data:`PANELS`) and the numbers of figures.json."""

    points: dict[str, Tensor]
    numbers: dict[str, Any]


def train_dsm_score(mixture: GaussianMixture, sigmas: Tensor, *, n_iters: int, batch_size: int, seed: int,
                    device: torch.device | str = "cpu") -> tuple[LevelMLP, list[float]]:
    """Adam (lr 1e-3, cosine decay to 0) on annealed DSM (λ(σ) = σ²), a fresh batch of p every step.

    :return: the level-conditioned network (eval mode) and the mean loss of every step.
    """
    return train_toy_score(mixture, sigmas, lambda net, x, gen: dsm_loss(net, x, sigmas.to(x.device), generator=gen),
                           n_iters=n_iters, batch_size=batch_size, seed=seed, device=device)


def weight_summary(x: Tensor) -> dict[str, float]:
    """Weight of the (−5, −5) mode among the points, its binomial standard error, and its error."""
    w = small_mode_weight(x)
    return {"weight": w, "stderr": math.sqrt(w * (1 - w) / x.shape[0]), "abs_error": abs(w - TRUE_WEIGHT)}


def compute(cfg: FiguresConfig, *, seed: int, device: torch.device | str = "cpu",
            learned: bool = True) -> LangevinMixing:
    """Run every sampler of Fig. 3 from the same uniform starts.

    :param learned: also train the DSM network and sample with it (panels ``*_learned``).
    """
    mixture = paper_mixture().to(device)
    sigmas = geometric_sigmas(SIGMA_BEGIN, SIGMA_END, NUM_LEVELS).to(device)
    n, T = cfg.n_chains, cfg.n_steps_each
    x0 = uniform_box(n, torch.Generator(device).manual_seed(seed), device)

    def chain_gen() -> torch.Generator:  # the same Langevin noise for every sampler
        return torch.Generator(device).manual_seed(seed + 1)

    points = {
        "exact_samples": mixture.sample(n, generator=torch.Generator(device).manual_seed(seed + 2)),
        "plain_exact": langevin(mixture.score, x0, n_steps=NUM_LEVELS * T, step_size=STEP_SIZE,
                                generator=chain_gen()),
        "annealed_exact": annealed_langevin(mixture.level_score(sigmas), x0, sigmas, n_steps_each=T, eps=EPS,
                                            generator=chain_gen()),
    }
    numbers: dict[str, Any] = {
        "true_weight": TRUE_WEIGHT,
        "mode": list(SMALL_MODE),
        "n_chains": n,
        "sampler": (f"sigmas geometric {SIGMA_BEGIN:g} -> {SIGMA_END:g} over {NUM_LEVELS} levels; annealed: eps {EPS:g}"
                    f" (paper convention), T {T}; plain: step {STEP_SIZE:g}, {NUM_LEVELS * T} steps; starts uniform"
                    " on [-8, 8]^2"),
    }
    if learned:
        net, losses = train_dsm_score(mixture, sigmas, n_iters=cfg.toy_iters, batch_size=cfg.toy_batch_size,
                                      seed=seed + 3, device=device)
        last = torch.full((n,), NUM_LEVELS - 1, dtype=torch.long, device=device)
        points["plain_learned"] = langevin(lambda x: net(x, last), x0, n_steps=NUM_LEVELS * T,
                                           step_size=STEP_SIZE, generator=chain_gen())
        points["annealed_learned"] = annealed_langevin(net, x0, sigmas, n_steps_each=T, eps=EPS, generator=chain_gen())
        numbers["dsm_iters"] = cfg.toy_iters
        numbers["dsm_final_loss"] = sum(losses[-50:]) / max(len(losses[-50:]), 1)
    numbers["panels"] = {name: weight_summary(x) for name, x in points.items()}
    return LangevinMixing({k: v.cpu() for k, v in points.items()}, numbers)


def plot(result: LangevinMixing, path: str | Path) -> Path:
    """One scatter panel per sampler, each with its measured weight of the (−5, −5) mode."""
    plt = pyplot()
    names = [k for k in PANELS if k in result.points]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4.6), constrained_layout=True, squeeze=False)
    fig.suptitle("Fig. 3 (paper): samples of p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I); "
                 f"{result.numbers['n_chains']} chains from uniform starts on [-8, 8]²", fontsize=12)
    for ax, name in zip(axes[0], names):
        pts = result.points[name].numpy()
        stats = result.numbers["panels"][name]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="tab:blue" if "exact" in name else "tab:green")
        ax.plot([-12, 12], [12, -12], color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
        ax.set_title(PANELS[name], fontsize=10)
        label = f"weight of (−5,−5): {stats['weight']:.3f} ± {stats['stderr']:.3f}\n(true {TRUE_WEIGHT:g})"
        ax.text(0.03, 0.97, label,
                transform=ax.transAxes, va="top", fontsize=9,
                bbox=dict(facecolor="white", alpha=0.8, edgecolor="grey"))
    return save_figure(fig, path)
