"""Inpainting (paper appendix, Algorithm 2) with either sampler of ``ncsn.core.sampling``.

Algorithm 1 plus one constraint: at level i a noisy copy ỹ = y + σ_i z of the
observed image is drawn once, and after every Langevin step the observed pixels
are reset to it, x ← x ⊙ (1 − m) + ỹ ⊙ m. The loop itself is the sampler's
(:func:`ncsn.core.sampling.annealed_langevin_progressive`, or the predictor-corrector
sampler, whose predictor steps are followed by the constraint too); the constraint
is its ``hook``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, rand_like, randn_like
from ncsn.core.sampling import final_state, sample_progressive


def validate_mask(mask: Tensor, y: Tensor) -> Tensor:
    """``mask`` as a bool tensor on y's device, True where the pixel is observed.

    :param mask: 0/1 values (any real or bool dtype), broadcastable to y's shape,
        e.g. [B, 1, H, W] or [1, 1, H, W] for y [B, C, H, W].
    :raises ValueError: when the mask does not broadcast to y, or holds values other than 0/1.
    """
    try:
        broadcast = torch.broadcast_shapes(mask.shape, y.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != y.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to y of shape {tuple(y.shape)}")
    if mask.dtype == torch.bool:
        return mask.to(y.device)
    if mask.is_complex():
        raise ValueError(f"mask must be real or bool, got dtype {mask.dtype}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask values must be 0 (missing) or 1 (observed)")
    return (mask == 1).to(y.device)


def inpaint(score_fn: Callable[[Tensor, Tensor], Tensor], y: Tensor, mask: Tensor, sigmas: Tensor, *,
            n_steps_each: int, eps: float, generator: GeneratorLike = None, x0: Tensor | None = None,
            convention: str = "paper", sampler: str = "ald", denoise: bool = False) -> Tensor:
    """Complete the unobserved pixels of ``y`` (paper Algorithm 2).

    For i = 1..L: ỹ = y + σ_i z (drawn once per level); T times the Langevin update of
    :func:`ncsn.core.sampling.annealed_langevin` with α_i (same ``eps``/``convention``), then
    x ← x ⊙ (1 − m) + ỹ ⊙ m. Returns x ⊙ (1 − m) + y ⊙ m, so observed pixels equal y exactly.
    A mask with no observed pixel gives exactly the sampler's samples.

    :param score_fn: s(x [B, ...], levels [B]) → [B, ...].
    :param y: [B, ...] images; only the observed pixels are read.
    :param mask: 0/1 or bool, broadcastable to y; 1 = observed.
    :param sigmas: [L] noise levels, descending.
    :param n_steps_each: T.
    :param eps: ε (``"paper"``) or step_lr (``"reference"``).
    :param sampler: ``"ald"`` (Algorithm 1) or ``"pc"`` (predictor-corrector; the constraint also
        follows each predictor step, with the ỹ of the level it lands on).
    :param denoise: end with the sampler's denoising step (before the observed pixels are set to y).
    :param generator: None, a ``torch.Generator``, or B per-example generators (ncsn.core.rng).
        Draws, in order: x0 (when not given), then per level the noise of the first step
        (``pc``: from level 2 on, the predictor's), ỹ, and the remaining steps' noise.
    :param x0: [B, ...] start; uniform on [0, 1) from ``generator`` when None.
    :return: [B, ...] completed images.
    """
    observed = validate_mask(mask, y)
    if x0 is None:
        x0 = rand_like(y, generator)
    sigma_list = [float(s) for s in sigmas.tolist()]
    current: dict[str, object] = {"level": None, "y_tilde": None}

    def clamp_observed(x: Tensor, level: int) -> Tensor:
        # ỹ = y + σ_i z, drawn at the first step of level i
        if current["level"] != level:
            current["level"], current["y_tilde"] = level, y + sigma_list[level] * randn_like(y, generator)
        # x ← x ⊙ (1 − m) + ỹ ⊙ m
        return torch.where(observed, current["y_tilde"], x)

    hook = clamp_observed if bool(observed.any()) else None
    steps = sample_progressive(sampler, score_fn, x0, sigmas, n_steps_each=n_steps_each, eps=eps,
                               convention=convention, denoise=denoise, generator=generator, hook=hook)
    x = final_state(steps, x0)
    return torch.where(observed, y, x)
