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

    :raises ValueError: for an unknown ``kind``, ``n < 0``, ``size < 1`` or ``fraction`` outside [0, 1].
    """
    if kind not in MASKS:
        raise ValueError(f"unknown mask {kind!r}; expected one of {', '.join(MASKS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"mask count n = {n!r} is invalid; it must be an integer >= 0")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"mask size = {size!r} is invalid; it must be an integer >= 1")
    if not 0.0 <= fraction <= 1.0:  # also refuses NaN
        raise ValueError(f"mask fraction = {fraction!r} is invalid; it must be in [0, 1]")
    mask = torch.ones(n, 1, size, size)
    if kind == "right_half":
        mask[..., size // 2:] = 0
    elif kind == "center":
        lo, hi = size // 4, size - size // 4
        mask[..., lo:hi, lo:hi] = 0
    else:  # random
        mask = (torch.rand(n, 1, size, size, generator=generator) >= fraction).float()
    return mask
