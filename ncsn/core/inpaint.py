"""Inpainting (paper appendix, Algorithm 2) with any sampler of ``ncsn.core.sampling``.

Algorithm 1 plus one constraint: at level σ a noisy copy ỹ = y + σ z of the observed image is
drawn once, and after every step that reaches σ the observed pixels are reset to it,
x ← x ⊙ (1 − m) + ỹ ⊙ m. The loop itself is the sampler's; the constraint is its callback
(:func:`observed_pixels`), the same for every sampler: after each Langevin step of Algorithm 1,
after each corrector and predictor step of predictor-corrector, and after each step of an ODE
solver, with the σ that step reached.

* :func:`inpaint`: Algorithm 2 with ``ald`` or ``pc`` on a score of level indices (the paper's form);
* :func:`inpaint_with`: any sampler of :data:`ncsn.core.sampling.SAMPLERS` on a denoiser.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, rand_like, randn_like
from ncsn.core.sampling import ODE_SAMPLERS, final_state, progressive, sample_progressive
from ncsn.core.sampling.denoiser import Callback, Denoiser
from ncsn.core.sampling.langevin import level_hook
from ncsn.core.sampling.probability_flow import ode_start


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
    constraint = observed_pixels(y, observed, generator)
    hook = level_hook(constraint, sigmas) if constraint is not None else None
    steps = sample_progressive(sampler, score_fn, x0, sigmas, n_steps_each=n_steps_each, eps=eps,
                               convention=convention, denoise=denoise, generator=generator, hook=hook)
    x = final_state(steps, x0)
    return torch.where(observed, y, x)


def observed_pixels(y: Tensor, observed: Tensor, generator: GeneratorLike = None) -> Callback | None:
    """Algorithm 2's constraint as a sampler callback: ``callback(x, σ) = x ⊙ (1 − m) + ỹ ⊙ m``.

    ỹ = y + σ z is drawn (from ``generator``) the first time a σ is reached and kept while the
    sampler stays at that σ (the T Langevin steps of a level); a new σ draws a new ỹ.

    :param y: [B, ...] images; :param observed: bool, broadcastable to y (:func:`validate_mask`).
    :return: the callback, or None when no pixel is observed (the sampler runs unconstrained).
    """
    if not bool(observed.any()):
        return None
    current: dict[str, Any] = {"sigma": None, "y_tilde": None}

    def clamp_observed(x: Tensor, sigma: float) -> Tensor:
        # ỹ = y + σ z, drawn at the first step that reaches σ
        if current["sigma"] != sigma:
            current["sigma"], current["y_tilde"] = sigma, y + sigma * randn_like(y, generator)
        # x ← x ⊙ (1 − m) + ỹ ⊙ m
        return torch.where(observed, current["y_tilde"], x)

    return clamp_observed


def inpaint_with(sampler: str, denoiser: Denoiser, y: Tensor, mask: Tensor, sigmas: Tensor, *,
                 generator: GeneratorLike = None, x0: Tensor | None = None, **options: Any) -> Tensor:
    """Complete the unobserved pixels of ``y`` with the sampler named ``sampler`` and Algorithm 2's constraint.

    :param sampler: one of :data:`ncsn.core.sampling.SAMPLERS`.
    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...].
    :param y: [B, ...] images; only the observed pixels are read.
    :param mask: 0/1 or bool, broadcastable to y; 1 = observed.
    :param sigmas: the sampler's σ: a schedule ending in 0 for the ODE solvers, the trained levels for ``ald``/``pc``.
    :param generator: None, a ``torch.Generator``, or B per-example generators. Draws, in order: x0 (when not
        given), then the sampler's noise and each ỹ as the steps need them.
    :param x0: [B, ...] start; when None, uniform on [0, 1) (Algorithm 1's start), plus σ_0 · N(0, I) for
        the ODE solvers (:func:`ode_start`).
    :param options: the sampler's own (``n_steps_each``, ``eps`` for ``ald``/``pc``; ``churn`` … for ``heun``).
    :return: [B, ...] completed images, equal to y wherever observed.
    """
    observed = validate_mask(mask, y)
    if x0 is None:
        x0 = ode_start(y, float(sigmas[0]), generator) if sampler in ODE_SAMPLERS else rand_like(y, generator)
    x = final_state(progressive(sampler, denoiser, x0, sigmas, generator=generator,
                                callback=observed_pixels(y, observed, generator), **options), x0)
    return torch.where(observed, y, x)

