"""From a checkpoint to images: load a score network safely and sample from it.

Sample ``i`` of a run is drawn from its own generator seeded with ``seeds[i]``,
so it is the same whatever the batch size or the batch it falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ncsn.checkpoint import load_checkpoint
from ncsn.config import ModelConfig, SampleConfig
from ncsn.models import build_model
from ncsn.rng import make_generators, rand_like
from ncsn.sampling import annealed_langevin, annealed_langevin_progressive


@dataclass
class ScoreModel:
    """A score network ready for sampling, with what describes it."""

    net: nn.Module
    sigmas: torch.Tensor  # [L], on the network's device
    checkpoint: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W), or (D,) for vector data."""
        data = self.checkpoint["data"]
        if data["image_size"]:
            return (data["channels"], data["image_size"], data["image_size"])
        return (data["channels"],)

    @property
    def logit_transform(self) -> bool:
        return bool(self.checkpoint["config"]["data"]["logit_transform"])


def load_score_model(source: str | Path | dict[str, Any], device: torch.device | str = "cpu",
                     *, use_ema: bool = True) -> ScoreModel:
    """Rebuild the network of a checkpoint (path or loaded dict) in eval mode.

    :param use_ema: take the EMA weights when the checkpoint has them.
    :raises CheckpointError: for unreadable or unsafe files.
    """
    ckpt = source if isinstance(source, dict) else load_checkpoint(source)
    sigmas = ckpt["sigmas"].to(device)
    model_cfg = ModelConfig(**{k: v for k, v in ckpt["config"]["model"].items()})
    net = build_model(model_cfg, channels=ckpt["data"]["channels"], image_size=ckpt["data"]["image_size"],
                      sigmas=sigmas)
    weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    net.load_state_dict(weights)
    return ScoreModel(net.to(device).eval(), sigmas, ckpt)


def to_uint8(x: torch.Tensor, *, logit_transform: bool = False) -> torch.Tensor:
    """Model-space images → uint8 pixels.

    :param x: [B, C, H, W] in [0, 1] (or logit space when ``logit_transform``).
    :return: [B, C, H, W] uint8 on the CPU.
    """
    if logit_transform:
        x = torch.sigmoid(x)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def initial_state(model: ScoreModel, seeds: Sequence[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Uniform starting points x₀ ~ U[0,1)^D (paper Algorithm 1), one generator per sample."""
    device = model.sigmas.device
    generators = make_generators(seeds, device)
    x0 = rand_like(torch.empty(len(seeds), *model.shape, device=device), generators)
    return x0, generators


def sample_batch(model: ScoreModel, seeds: Sequence[int], cfg: SampleConfig,
                 *, n_steps_each: int | None = None) -> torch.Tensor:
    """Annealed Langevin samples for ``seeds``.

    :return: [len(seeds), *shape] float samples in model space, on the model's device.
    """
    x0, generators = initial_state(model, seeds)
    return annealed_langevin(model.net, x0, model.sigmas, n_steps_each=n_steps_each or cfg.n_steps_each,
                             eps=cfg.eps, generator=generators, denoise=cfg.denoise, convention=cfg.convention)


def trajectory(model: ScoreModel, seeds: Sequence[int], cfg: SampleConfig) -> Iterator[tuple[int, torch.Tensor]]:
    """``(level, x)`` after each noise level (and the denoising step when on)."""
    x0, generators = initial_state(model, seeds)
    yield -1, x0
    yield from annealed_langevin_progressive(model.net, x0, model.sigmas, n_steps_each=cfg.n_steps_each,
                                             eps=cfg.eps, generator=generators, denoise=cfg.denoise,
                                             convention=cfg.convention)
