"""Inpainting masks (1 = observed pixel, 0 = to be completed)."""

from __future__ import annotations

import torch

MASKS = ("right_half", "center", "random")


def make_mask(kind: str, n: int, size: int, *, fraction: float = 0.7,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A float mask [n, 1, size, size] that broadcasts over channels.

    * ``right_half``: the right half is hidden (the paper's inpainting figure).
    * ``center``: a centred square of half the side is hidden.
    * ``random``: each pixel is hidden with probability ``fraction``.
    """
    mask = torch.ones(n, 1, size, size)
    if kind == "right_half":
        mask[..., size // 2:] = 0
    elif kind == "center":
        lo, hi = size // 4, size - size // 4
        mask[..., lo:hi, lo:hi] = 0
    elif kind == "random":
        mask = (torch.rand(n, 1, size, size, generator=generator) >= fraction).float()
    else:
        raise ValueError(f"unknown mask {kind!r}; expected one of {', '.join(MASKS)}")
    return mask
