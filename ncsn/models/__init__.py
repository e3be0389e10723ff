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

from ncsn.models.mlp import LevelMLP
from ncsn.models.unet import UNet

ARCHS = ("ncsn", "ncsnv2", "unet", "mlp")
CONTINUOUS_ARCHS = ("unet", "mlp")  # a continuous embedding of σ: ``forward_sigma(x, sigma)`` takes any σ

__all__ = ["ARCHS", "CONTINUOUS_ARCHS", "ForwardSigma", "build_model", "count_parameters", "LevelMLP", "UNet"]


def build_model(arch: str, *, channels: int, image_size: int, sigmas: Tensor, ngf: int,
                mults: tuple[float, ...] = (0.5, 1.0, 2.0), precond: str = "ncsnv2",
                attention: bool = False) -> nn.Module:
    """The score network named ``arch`` (one of :data:`ARCHS`), with its noise levels as a buffer.

    :param channels: image channels, or the dimension D of vector data.
    :param image_size: image height = width; 0 for vector data (``mlp``, which ignores it).
    :param sigmas: [L] descending noise levels; L = ``len(sigmas)``.
    :param ngf: base width (the MLP's hidden width).
    :param mults: / :param precond: / :param attention: ``unet`` only (``ncsn.models.unet.UNet``).
    :raises ValueError: for an unknown ``arch``.
    """
    num_levels = len(sigmas)
    if arch == "ncsn":
        from ncsn.models.refinenet import NCSN

        return NCSN(channels, image_size, ngf, num_levels, sigmas=sigmas)
    elif arch == "ncsnv2":
        from ncsn.models.refinenet import NCSN

        return NCSN(channels, image_size, ngf, num_levels, sigmas=sigmas, conditional=False)
    elif arch == "unet":
        return UNet(channels, image_size, ngf, num_levels, sigmas=sigmas, mults=mults, precond=precond,
                    attention=attention)
    elif arch == "mlp":
        return LevelMLP(dim=channels, hidden=ngf, num_levels=num_levels, sigmas=sigmas)
    raise ValueError(f"unknown model.arch {arch!r}; expected one of {', '.join(repr(a) for a in ARCHS)}")


class ForwardSigma(nn.Module):
    """A network whose ``forward(x, sigma)`` is the wrapped one's ``forward_sigma``: what the train step (and
    DistributedDataParallel, torch.compile) calls when training at any σ (``train.sigma_sampling: continuous``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not hasattr(net, "forward_sigma"):
            raise ValueError(f"{type(net).__name__} takes only its trained levels (no forward_sigma)")
        self.net = net

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.net.forward_sigma(x, sigma)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (buffers such as ``sigmas`` excluded)."""
    return sum(p.numel() for p in model.parameters())
