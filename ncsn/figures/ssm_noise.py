"""Paper Fig. 2: sliced score matching on clean images fails; a tiny Gaussian perturbation fixes it.

The paper trains a ResNet on CIFAR-10; here a three-layer CNN (:class:`TinyScoreCNN`) on the
prepared images (mnist5k digits by default), a few hundred steps at CPU scale. Two copies
start from the same weights and see the same batches and projections: one on clean images
x ∈ [0, 1], one on x + σz with σ = ``figures.image_noise`` (paper: N(0, 0.0001), σ = 0.01).

Why the clean run cannot converge: the SSM objective J(θ) = E[½‖s_θ(x)‖² + tr ∇ₓ s_θ(x)] has
no minimum when the data lie on a low-dimensional set. On a pixel j that is 0 in every digit,
s_j(x) = −k·x_j adds 0 to ½‖s‖² and −k to the trace, for every k > 0: the loss decreases
without bound as the network grows. For perturbed data q = p ∗ N(0, σ²I) the minimum is
−½ E_q‖∇ log q‖², and the Fisher information of X + σZ is at most D/σ² (that of σZ), so

    min_θ J(θ) ≥ −D / (2σ²)     (D = C·H·W; −3.92·10⁶ for 28×28 digits and σ = 0.01).

The figure draws that bound; the clean loss crosses it, the perturbed loss levels off above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ncsn.config import FiguresConfig
from ncsn.figures.common import init_seeded, moving_average, pyplot, save_figure
from ncsn.core.losses import ssm_loss
from ncsn.storage.tables import write_csv as write_table

WIDTH = 16  # channels of the hidden layers
LR = 1e-2  # Adam; larger than the paper's 1e-3 so that a few hundred steps reach the plateau


class TinyScoreCNN(nn.Module):
    """s_θ(x) = conv(ELU(conv(ELU(conv(2x − 1))))), 3×3 convolutions, C → w → w → C channels.

    Smooth (ELU, as the paper's networks), so the Jacobian-vector products of SSM exist.
    x [B, C, H, W] in [0, 1] → [B, C, H, W].
    """

    def __init__(self, channels: int, width: int = WIDTH) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ELU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.ELU(),
                                 nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(2 * x - 1)


@dataclass
class SsmCurves:
    """The two loss curves of Fig. 2 and their summary (``numbers``, saved in figures.json)."""

    clean: list[float]
    perturbed: list[float]
    noise: float
    dim: int
    dataset: str
    numbers: dict[str, Any]

    @property
    def bound(self) -> float:
        """−D/(2σ²): no score model can take the perturbed-data SSM objective below this."""
        return -self.dim / (2 * self.noise ** 2)


def ssm_curve(images: Tensor, *, noise: float, n_iters: int, batch_size: int, seed: int,
              device: torch.device | str = "cpu") -> list[float]:
    """Train a fresh :class:`TinyScoreCNN` by SSM for ``n_iters`` steps; the mean loss of each step.

    Batches, projections and the network's initialisation depend on ``seed`` only, so two
    calls that differ in ``noise`` see the same images in the same order. Training stops at
    the first non-finite loss (recorded as NaN).

    :param images: uint8 [N, C, H, W].
    :param noise: σ of the Gaussian perturbation; 0 trains on the clean images.
    """
    assert images.ndim == 4 and images.dtype == torch.uint8, \
        f"expected uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
    net = init_seeded(seed, lambda: TinyScoreCNN(images.shape[1])).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device).manual_seed(seed + 1)
    proj_gen = torch.Generator(device).manual_seed(seed + 2)
    losses: list[float] = []
    for _ in range(n_iters):
        idx = torch.randint(0, len(images), (batch_size,), generator=data_gen)
        x = images[idx].to(device).float() / 255.0
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=noise_gen, device=device)
        loss = ssm_loss(net, x, generator=proj_gen).mean()
        value = loss.item()
        if not math.isfinite(value):
            losses.append(float("nan"))
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(value)
    return losses


def curve_stats(losses: list[float], bound: float) -> dict[str, Any]:
    """Where a loss curve ends and how much it still moves.

    Over the last 25 % of steps: ``slope_last_quarter`` (least-squares trend, loss per step),
    ``relative_slope_last_quarter`` (that trend over the quarter, relative to its mean loss:
    ≈ 0 for a converged curve) and ``std_last_quarter`` (spread around the trend).
    ``final``: mean of the last 10 %; ``first_step_below_bound``: 1-based, None if never.
    """
    finite = [v for v in losses if math.isfinite(v)]
    nan = float("nan")
    tail10 = finite[-max(1, len(finite) // 10):] if finite else [nan]
    tail = finite[-max(2, len(finite) // 4):] if len(finite) >= 2 else []
    slope = std = rel_slope = nan
    if tail:
        n = len(tail)
        t_mean, y_mean = (n - 1) / 2, sum(tail) / n
        slope = sum((t - t_mean) * (y - y_mean) for t, y in enumerate(tail)) / sum((t - t_mean) ** 2 for t in range(n))
        residuals = [y - (y_mean + slope * (t - t_mean)) for t, y in enumerate(tail)]
        std = math.sqrt(sum(r * r for r in residuals) / max(n - 2, 1))
        rel_slope = slope * n / abs(y_mean) if y_mean else nan
    return {
        "steps": len(losses),
        "final": sum(tail10) / len(tail10),
        "min": min(finite) if finite else nan,
        "slope_last_quarter": slope,
        "relative_slope_last_quarter": rel_slope,
        "std_last_quarter": std,
        "n_nonfinite": len(losses) - len(finite),
        "first_step_below_bound": next((i + 1 for i, v in enumerate(losses) if v < bound), None),
    }


def compute(images: Tensor, cfg: FiguresConfig, *, seed: int, dataset: str,
            device: torch.device | str = "cpu") -> SsmCurves:
    """Both curves of Fig. 2 on ``images`` (uint8 [N, C, H, W]) and their statistics."""
    kwargs = dict(n_iters=cfg.image_iters, batch_size=cfg.image_batch_size, seed=seed, device=device)
    clean = ssm_curve(images, noise=0.0, **kwargs)
    perturbed = ssm_curve(images, noise=cfg.image_noise, **kwargs)
    dim = math.prod(images.shape[1:])
    curves = SsmCurves(clean, perturbed, cfg.image_noise, dim, dataset, {})
    curves.numbers = {
        "dataset": dataset,
        "model": f"TinyScoreCNN (3 conv layers, width {WIDTH}), Adam lr {LR:g}, batch {cfg.image_batch_size}",
        "noise_std": cfg.image_noise,
        "dim": dim,
        "bound_perturbed": curves.bound,
        "clean": curve_stats(clean, curves.bound),
        "perturbed": curve_stats(perturbed, curves.bound),
    }
    return curves


def write_csv(curves: SsmCurves, path: str | Path) -> Path:
    """``step, clean, perturbed`` (empty where a run stopped early)."""
    n = max(len(curves.clean), len(curves.perturbed))
    rows = [[i + 1, *[f"{c[i]:.6g}" if i < len(c) else "" for c in (curves.clean, curves.perturbed)]]
            for i in range(n)]
    write_table(path, ["step", "clean", "perturbed"], rows)
    return Path(path)


def plot(curves: SsmCurves, path: str | Path) -> Path:
    """Two panels as in the paper: the loss without noise (left) and with noise (right)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
    fig.suptitle(f"Fig. 2 (paper: CIFAR-10, ResNet): sliced score matching loss on {curves.dataset} images, "
                 f"tiny CNN, {max(len(curves.clean), len(curves.perturbed))} steps at CPU scale", fontsize=12)
    window = max(1, len(curves.perturbed) // 20)
    for ax, losses, key, title in (
        (axes[0], curves.clean, "clean", "no noise: the objective has no minimum"),
        (axes[1], curves.perturbed, "perturbed", f"data + N(0, {curves.noise:g}²): converges above the bound"),
    ):
        steps = list(range(1, len(losses) + 1))
        ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="loss per step")
        finite = [v for v in losses if math.isfinite(v)]  # only a last step can be NaN (training stops)
        ax.plot(steps[:len(finite)], moving_average(finite, window), color="tab:blue", linewidth=1.8,
                label=f"moving average ({window} steps)")
        ax.axhline(curves.bound, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"−D/(2σ²) = {curves.bound:.3g}: lower bound for noisy data")
        stats = curves.numbers[key]
        ax.set_title(f"{title}\nfinal {stats['final']:.3g}; last quarter of training: drift "
                     f"{100 * stats['relative_slope_last_quarter']:+.0f}% of |loss|, "
                     f"noise ±{stats['std_last_quarter']:.2g}",
                     fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("SSM loss (per example)")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
