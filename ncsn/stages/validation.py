"""Held-out DSM loss per noise level: the paper's "principled model comparison".

The annealed DSM loss (``ncsn.core.losses.dsm``) is comparable across models trained on the
same data and σ schedule; measured with fixed noise draws at every level, it is also
comparable across steps (training) and snapshots (checkpoint selection).
"""

from __future__ import annotations

import torch
from torch import nn

from ncsn.config import Config
from ncsn.core.losses import dsm_loss_at
from ncsn.data.transforms import preprocess, resolve_flip


def input_options(cfg: Config) -> dict[str, bool]:
    """The ``data.*`` options of :func:`ncsn.data.transforms.preprocess` (``flip`` resolved for the dataset)."""
    return {"dequantize": cfg.data.dequantize, "logit_transform": cfg.data.logit_transform,
            "flip": resolve_flip(cfg.data.flip, cfg.base.dataset)}


@torch.no_grad()
def validation_loss(model: nn.Module, val: torch.Tensor, sigmas: torch.Tensor, cfg: Config,
                    *, batch_size: int = 256) -> torch.Tensor:
    """Mean DSM loss of ``model`` on held-out data at every noise level.

    Noise comes from generators seeded with ``base.seed + 1``, so values are comparable
    across steps and runs.

    :param val: [N, ...] stored held-out examples (uint8 images or float points).
    :param sigmas: [L] noise levels, on the model's device.
    :return: [L] loss per level, weighted by σ_i^anneal_power as in training.
    """
    device = sigmas.device
    gen = torch.Generator(device).manual_seed(cfg.base.seed + 1)
    cpu_gen = torch.Generator().manual_seed(cfg.base.seed + 1)
    totals = torch.zeros(len(sigmas), device=device)
    for start in range(0, len(val), batch_size):
        x = preprocess(val[start:start + batch_size], cpu_gen, **input_options(cfg)).to(device)
        for level in range(len(sigmas)):
            totals[level] += dsm_loss_at(model, x, sigmas, level, anneal_power=cfg.train.anneal_power,
                                         generator=gen).sum()
    return totals / len(val)
