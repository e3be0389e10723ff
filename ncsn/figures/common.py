"""What the figure modules share: file names, the toy setting, matplotlib output, small statistics."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor

from ncsn.atomic import atomic_write
from ncsn.models import LevelMLP
from ncsn.toy import GaussianMixture

# Files of the ``figures`` stage, inside ``paths.figures`` (read back by ncsn.report).
FIGURE_FILES = {
    "score_accuracy": "fig1_score_accuracy.png",
    "ssm_noise": "fig2_ssm_noise.png",
    "ssm_noise_csv": "fig2_ssm_loss.csv",
    "langevin_mixing": "fig3_langevin.png",
    "numbers": "figures.json",
}

# The paper's toy setting (Section 3.2.2 / Fig. 3): starts uniform on [-BOX, BOX]^2.
BOX = 8.0
SMALL_MODE = (-5.0, -5.0)  # the mode of weight 1/5 in ncsn.toy.paper_mixture


def small_mode_weight(x: Tensor) -> float:
    """Fraction of 2-D points nearer (−5, −5) than (5, 5), i.e. with x₁ + x₂ < 0.

    :param x: [N, 2] points.
    """
    assert x.ndim == 2 and x.shape[1] == 2, f"expected [N, 2] points, got {tuple(x.shape)}"
    return (x.sum(1) < 0).float().mean().item()


def uniform_box(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """n points uniform on [−BOX, BOX]²: [n, 2] on ``device`` (``generator`` lives there too)."""
    return (torch.rand(n, 2, generator=generator, device=device) * 2 - 1) * BOX


def init_seeded(seed: int, build):
    """``build()`` with torch's global generator seeded by ``seed``, restored afterwards.

    Network initialisers draw from the global generator; forking keeps that a local effect.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


TOY_HIDDEN = 128  # width of the LevelMLP of figures 1 and 3
TOY_LR = 1e-3


def train_toy_score(mixture: GaussianMixture, sigmas: Tensor,
                    loss: Callable[[LevelMLP, Tensor, torch.Generator], Tensor], *,
                    n_iters: int, batch_size: int, seed: int,
                    device: torch.device | str = "cpu") -> tuple[LevelMLP, list[float]]:
    """A ``LevelMLP`` over ``sigmas`` trained by Adam (lr 1e-3, cosine decay to 0), a fresh batch of p every step.

    :param loss: ``loss(net, x [B, 2], generator) -> [B]``, the per-example objective.
    :return: the network (eval mode) and the mean loss of every step.
    """
    sigmas = sigmas.to(device)
    net = init_seeded(seed, lambda: LevelMLP(dim=mixture.dim, hidden=TOY_HIDDEN, num_levels=len(sigmas),
                                             sigmas=sigmas)).to(device)
    mixture = mixture.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=TOY_LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_iters)
    gen = torch.Generator(device).manual_seed(seed)
    losses = []
    for _ in range(n_iters):
        x = mixture.sample(batch_size, generator=gen)  # [B, 2]
        value = loss(net, x, gen).mean()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
        losses.append(value.item())
    return net.eval(), losses


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 100) -> Path:
    """Write a matplotlib figure as a PNG atomically (temporary file + ``os.replace``) and close it."""
    try:
        return atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    finally:
        pyplot().close(fig)


def placeholder_figure(path: str | Path, message: str) -> Path:
    """A PNG that only says why the figure is missing (keeps a stage's declared outputs complete)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return save_figure(fig, path)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: unchanged), restoring the previous number."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
