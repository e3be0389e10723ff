"""Paper Fig. 1: a score learned by sliced score matching is accurate only near the modes.

A :class:`~ncsn.models.LevelMLP` with one level (σ ≡ 1, i.e. an unconditional score model
s_θ(x)) is trained with sliced score matching (:func:`ncsn.core.losses.ssm_loss`) on fresh samples
of p = :func:`ncsn.core.toy.paper_mixture` and compared on a grid over [−8, 8]² with the exact
score ∇ₓ log p(x) (``mixture.score``).

Score matching minimises the Fisher divergence ½ E_p ‖s_θ(x) − ∇ₓ log p(x)‖²: errors are
weighted by p, so where p is tiny nothing constrains s_θ. Regions are named by highest-
density regions (HDR): *high density* = inside the 90 % HDR {x : p(x) ≥ t₉₀} with
P_p(p(X) ≥ t₉₀) = 0.9; *low density* = outside the 99.9 % HDR, where a training batch of
this size almost never has a point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ncsn.config import FiguresConfig
from ncsn.figures.common import pyplot, save_figure
from ncsn.figures.toy_training import BOX, train_toy_score
from ncsn.core.losses import ssm_loss
from ncsn.models import LevelMLP
from ncsn.core.toy import GaussianMixture, paper_mixture

GRID_SIZE = 97  # points per axis: spacing 1/6 on [−8, 8], so every 6th point is a whole number
ARROW_EVERY = 6  # quiver arrows on the whole-number points (17 × 17)
HIGH_MASS, LOW_MASS = 0.9, 0.999  # inside the 90 % HDR vs outside the 99.9 % HDR


@dataclass
class ScoreAccuracy:
    """What Fig. 1 shows.

    :param axis: [G] grid coordinates (the same on both axes).
    :param log_density: [G, G] log p at (x = axis[j], y = axis[i]) (row i, column j).
    :param exact: [G, G, 2] ∇ₓ log p on the grid.
    :param estimated: [G, G, 2] s_θ on the grid.
    :param log_thresholds: log p levels bounding the 90 % and 99.9 % HDRs.
    :param numbers: the summary saved in figures.json.
    :param losses: the SSM training loss per step.
    """

    axis: Tensor
    log_density: Tensor
    exact: Tensor
    estimated: Tensor
    log_thresholds: dict[str, float]
    numbers: dict[str, Any]
    losses: list[float]


def unconditional(net: LevelMLP) -> Callable[[Tensor], Tensor]:
    """s(x) = net(x, level 0): a one-level LevelMLP as a plain score model."""
    return lambda x: net(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))


def train_ssm_score(mixture: GaussianMixture, *, n_iters: int, batch_size: int, seed: int,
                    device: torch.device | str = "cpu") -> tuple[LevelMLP, list[float]]:
    """Adam (lr 1e-3, cosine decay to 0) on the sliced score matching loss, a fresh batch of p every step.

    :return: the network (eval mode) and the mean loss of every step.
    """
    return train_toy_score(mixture, torch.ones(1), lambda net, x, gen: ssm_loss(unconditional(net), x, generator=gen),
                           n_iters=n_iters, batch_size=batch_size, seed=seed, device=device)


def hdr_log_threshold(mixture: GaussianMixture, mass: float, generator: torch.Generator,
                      n: int = 100_000) -> float:
    """The level t with P_p(log p(X) ≥ t) = ``mass``, by Monte Carlo: the HDR of that mass is {log p ≥ t}."""
    log_p = mixture.log_prob(mixture.sample(n, generator=generator))
    return torch.quantile(log_p.double(), 1.0 - mass).item()


def compute(cfg: FiguresConfig, *, seed: int, device: torch.device | str = "cpu") -> ScoreAccuracy:
    """Train s_θ by SSM, then measure ‖s_θ − ∇ₓ log p‖ on the grid and under p."""
    mixture = paper_mixture().to(device)
    net, losses = train_ssm_score(mixture, n_iters=cfg.toy_iters, batch_size=cfg.toy_batch_size,
                                  seed=seed, device=device)
    score = unconditional(net)
    axis = torch.linspace(-BOX, BOX, GRID_SIZE, device=device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")  # row i ↔ y, column j ↔ x
    points = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # [G², 2]
    with torch.no_grad():
        estimated = score(points)
    exact = mixture.score(points)
    log_p = mixture.log_prob(points)
    err = (estimated - exact).norm(dim=1)  # [G²]
    exact_norm = exact.norm(dim=1)

    gen = torch.Generator(device).manual_seed(seed + 1)
    t_high, t_low = (hdr_log_threshold(mixture, m, gen) for m in (HIGH_MASS, LOW_MASS))
    high, low = log_p >= t_high, log_p < t_low
    # Under p itself (fresh samples): the quantity score matching minimises.
    x_p = mixture.sample(20_000, generator=gen)
    with torch.no_grad():
        err_p = (score(x_p) - mixture.score(x_p)).norm(dim=1)

    def mean(t: Tensor) -> float:
        return t.mean().item() if t.numel() else float("nan")

    numbers = {
        "regions": "high density: inside the 90% highest-density region of p; low density: outside the 99.9% one",
        "grid": f"{GRID_SIZE}x{GRID_SIZE} on [-{BOX:g}, {BOX:g}]^2",
        "error_high_density": mean(err[high]),
        "error_low_density": mean(err[low]),
        "exact_score_norm_high_density": mean(exact_norm[high]),
        "exact_score_norm_low_density": mean(exact_norm[low]),
        "relative_error_high_density": mean(err[high]) / mean(exact_norm[high]),
        "relative_error_low_density": mean(err[low]) / mean(exact_norm[low]),
        "error_uniform_on_grid": mean(err),
        "error_density_weighted": mean(err_p),
        "fisher_divergence": 0.5 * mean(err_p ** 2),
        "grid_fraction_high_density": mean(high.float()),
        "grid_fraction_low_density": mean(low.float()),
        "ssm_iters": cfg.toy_iters,
        "ssm_final_loss": sum(losses[-50:]) / max(len(losses[-50:]), 1),
    }
    g = GRID_SIZE
    return ScoreAccuracy(axis=axis.cpu(), log_density=log_p.reshape(g, g).cpu(), exact=exact.reshape(g, g, 2).cpu(),
                         estimated=estimated.reshape(g, g, 2).cpu(),
                         log_thresholds={"hdr90": t_high, "hdr999": t_low}, numbers=numbers, losses=losses)


def plot(result: ScoreAccuracy, path: str | Path) -> Path:
    """Four panels: exact and estimated score directions over the density, the error, the weighted error."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    r, n = result, result.numbers
    extent = (-BOX, BOX, -BOX, BOX)
    density = r.log_density.exp().numpy()
    err = (r.estimated - r.exact).norm(dim=-1).numpy()
    axis = r.axis.numpy()
    sub = slice(None, None, ARROW_EVERY)
    ax_sub = axis[sub]

    fig, axes = plt.subplots(1, 4, figsize=(19, 5), constrained_layout=True)
    fig.suptitle("Fig. 1 (paper): score estimated by sliced score matching vs the exact score on "
                 "p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I); HDR: highest-density region of p", fontsize=12)

    def hdr_contours(ax, colors=("red", "white")) -> None:
        ax.contour(axis, axis, r.log_density.numpy(), levels=[r.log_thresholds["hdr999"], r.log_thresholds["hdr90"]],
                   colors=list(colors)[::-1], linewidths=[1.0, 1.6], linestyles=["dashed", "solid"])

    for ax, field, title in ((axes[0], r.exact, "data density p(x) and exact scores ∇ log p(x)"),
                             (axes[1], r.estimated, "estimated scores s_θ(x) (SSM)")):
        ax.imshow(density, extent=extent, origin="lower", cmap="Oranges")
        vec = field[sub, sub].numpy()
        norm = (vec ** 2).sum(-1, keepdims=True) ** 0.5 + 1e-12
        ax.quiver(ax_sub, ax_sub, vec[..., 0] / norm[..., 0], vec[..., 1] / norm[..., 0], angles="xy",
                  scale_units="xy", scale=1.4, width=0.004, color="black")
        hdr_contours(ax, colors=("red", "grey"))
        ax.set_title(title + "\n(unit arrows; red: 90% HDR, grey dashed: 99.9% HDR)", fontsize=10)

    im = axes[2].imshow(err, extent=extent, origin="lower", cmap="viridis",
                        norm=LogNorm(vmin=max(err.min(), 1e-3), vmax=err.max()))
    hdr_contours(axes[2])
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    axes[2].set_title("error ‖s_θ − ∇ log p‖ (unweighted)\nred: 90% HDR, white dashed: 99.9% HDR", fontsize=10)
    axes[2].text(0.02, 0.02, f"mean error inside 90% HDR: {n['error_high_density']:.2f}\n"
                             f"mean error outside 99.9% HDR: {n['error_low_density']:.2f}",
                 transform=axes[2].transAxes, fontsize=9, color="white", va="bottom",
                 bbox=dict(facecolor="black", alpha=0.5, edgecolor="none"))

    weighted = density * err ** 2
    im = axes[3].imshow(weighted, extent=extent, origin="lower", cmap="magma")
    fig.colorbar(im, ax=axes[3], shrink=0.8)
    axes[3].set_title("density-weighted p(x)·‖s_θ − ∇ log p‖²\n(what score matching minimises)", fontsize=10)
    axes[3].text(0.02, 0.02, f"Fisher divergence ½E_p‖·‖²: {n['fisher_divergence']:.3g}\n"
                             f"E_p ‖error‖: {n['error_density_weighted']:.3f}",
                 transform=axes[3].transAxes, fontsize=9, color="white", va="bottom",
                 bbox=dict(facecolor="black", alpha=0.5, edgecolor="none"))
    for ax in axes:
        ax.set_xlim(-BOX, BOX)
        ax.set_ylim(-BOX, BOX)
        ax.set_aspect("equal")
    return save_figure(fig, path)
