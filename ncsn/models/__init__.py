"""Score networks s_θ(x, levels) → a tensor shaped like x, and the factory that builds them.

Every network takes ``x`` ([B, C, H, W] images in [0, 1], or [B, D] vectors) and
``levels`` (int64 [B], indices into the descending noise levels, 0 = largest σ).

* ``ncsn``:   the paper's RefineNet with conditional instance norm++ (``refinenet.NCSN``,
            the reference code's ``CondRefineNetDilated``).
* ``ncsnv2``: the same network unconditioned, output divided by σ (NCSNv2 technique 3).
* ``unet``:   a small noise-conditional U-Net for CPUs (``unet.UNet``).
* ``mlp``:    a noise-conditional MLP for vector data such as the 2-D toy mixture (``mlp.LevelMLP``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ncsn.config import ARCHS, ModelConfig
from ncsn.models.mlp import LevelMLP
from ncsn.models.unet import UNet

__all__ = ["build_model", "count_parameters", "LevelMLP", "UNet"]


def build_model(cfg: ModelConfig, *, channels: int, image_size: int, sigmas: Tensor) -> nn.Module:
    """The score network named by ``cfg.arch``, with its noise levels as a buffer.

    :param cfg: ``arch``, ``ngf`` (base width; the MLP's hidden width), and for ``unet`` ``mults``,
        ``attention`` and ``precond`` are read.
    :param channels: image channels, or the dimension D of vector data.
    :param image_size: image height = width; 0 for vector data (``mlp``, which ignores it).
    :param sigmas: [L] descending noise levels; L = ``len(sigmas)``.
    :raises ValueError: for an unknown ``cfg.arch``.
    """
    num_levels = len(sigmas)
    if cfg.arch == "ncsn":
        from ncsn.models.refinenet import NCSN

        return NCSN(channels, image_size, cfg.ngf, num_levels, sigmas=sigmas)
    elif cfg.arch == "ncsnv2":
        from ncsn.models.refinenet import NCSN

        return NCSN(channels, image_size, cfg.ngf, num_levels, sigmas=sigmas, conditional=False)
    elif cfg.arch == "unet":
        return UNet(channels, image_size, cfg.ngf, num_levels, sigmas=sigmas, mults=cfg.mults, precond=cfg.precond,
                    attention=cfg.attention)
    elif cfg.arch == "mlp":
        return LevelMLP(dim=channels, hidden=cfg.ngf, num_levels=num_levels, sigmas=sigmas)
    raise ValueError(f"unknown model.arch {cfg.arch!r}; expected one of {', '.join(repr(a) for a in ARCHS)}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (buffers such as ``sigmas`` excluded)."""
    return sum(p.numel() for p in model.parameters())
