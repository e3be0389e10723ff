"""The 2-D toy setting of figures 1 and 3 (starting box, small mode) and the training loop of its score networks."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ncsn.figures.common import init_seeded
from ncsn.models import LevelMLP
from ncsn.core.toy import GaussianMixture

# The paper's toy setting (Section 3.2.2 / Fig. 3): starts uniform on [-BOX, BOX]^2.
BOX = 8.0
SMALL_MODE = (-5.0, -5.0)  # the mode of weight 1/5 in ncsn.core.toy.paper_mixture


def small_mode_weight(x: Tensor) -> float:
    """Fraction of 2-D points nearer (−5, −5) than (5, 5), i.e. with x₁ + x₂ < 0.

    :param x: [N, 2] points.
    """
    assert x.ndim == 2 and x.shape[1] == 2, f"expected [N, 2] points, got {tuple(x.shape)}"
    return (x.sum(1) < 0).float().mean().item()


def uniform_box(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """n points uniform on [−BOX, BOX]²: [n, 2] on ``device`` (``generator`` lives there too)."""
    return (torch.rand(n, 2, generator=generator, device=device) * 2 - 1) * BOX


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
