"""Langevin dynamics: annealed (paper Algorithm 1) and plain, with the step sizes they share.

* :func:`annealed_langevin` / :func:`annealed_langevin_progressive`: Algorithm 1,
  L·T network evaluations (+1 with the final denoising step).
* :func:`step_sizes`: α_i = ε σᵢ²/σ_L² in the two conventions; :func:`technique4_eps`:
  NCSNv2 technique 4, the ε that suits a given T.
* :func:`langevin`: plain (non-annealed) Langevin dynamics with a fixed step.
* :func:`ald`: Algorithm 1 behind the samplers' common signature (a denoiser, ``sigmas``, options).

Pure functions: the state lives in the tensors, noise comes only from the
``generator`` passed in (see ncsn.core.rng), device and dtype follow ``x0``. The loops
never read a tensor back to the host (step sizes are Python floats computed once),
so on a GPU the steps are queued without a synchronisation.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, randn_like
from ncsn.core.sampling.denoiser import Callback, Denoiser, level_score, step_callback

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Hook = Callable[[Tensor, int], Tensor]

CONVENTIONS = ("paper", "reference")



def step_sizes(sigmas: list[float], eps: float, convention: str = "paper") -> list[float]:
    """α_i for every level, as Python floats.

    * ``"paper"``: α_i = ε · σ_i²/σ_L² (Algorithm 1).
    * ``"reference"``: ε is the reference code's ``step_lr``, which plays α/2:
      α_i = 2 · ε · σ_i²/σ_L².

    :param sigmas: [L] noise levels σ₁ > … > σ_L.
    """
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if convention == "paper":
        scale = eps
    elif convention == "reference":
        scale = 2.0 * eps
    else:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return [scale * sigma ** 2 / sigmas[-1] ** 2 for sigma in sigmas]


def technique4_eps(sigmas: list[float], n_steps_each: int, convention: str = "paper") -> float:
    """NCSNv2 technique 4: the ε for which T Langevin steps at each level best reach that level's noise scale.

    For data that is a single point, p_σᵢ = N(0, σᵢ² I) and one step with
    α_i = ε σᵢ²/σ_L² (paper convention) maps the variance v to (1 − u)² v + 2u σᵢ²,
    u = α_i / (2σᵢ²) = ε / (2σ_L²). Starting from the previous level's v = γ² σᵢ²
    (γ = σᵢ₋₁/σᵢ), after T steps (NCSNv2 Eq. 4, in this notation)

        v_T/σᵢ² = (1 − u)^{2T} · (γ² − 2/(2 − u)) + 2/(2 − u),

    which is above 1 for every u in (0, 1); technique 4 takes the u that brings it
    closest to 1 (found on a fine log grid). Then ε = 2uσ_L² (``"paper"``) or uσ_L²
    (``"reference"``, the step_lr of the reference code).

    :param sigmas: [L] descending levels; γ is their largest consecutive ratio (a
        geometric schedule has one ratio).
    :param n_steps_each: T ≥ 1.
    :return: ε as a Python float.
    """
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each must be >= 1, got {n_steps_each}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    sigma_list = [float(s) for s in sigmas]
    gamma = max([a / b for a, b in zip(sigma_list, sigma_list[1:])], default=1.0)
    u = torch.logspace(-7, math.log10(0.999), 20001, dtype=torch.float64)
    c = 2.0 / (2.0 - u)
    ratio = (1.0 - u) ** (2 * n_steps_each) * (gamma ** 2 - c) + c
    best = float(u[torch.argmin(ratio)])
    return (2.0 if convention == "paper" else 1.0) * best * sigma_list[-1] ** 2


def _checked_levels(x0: Tensor, sigmas: Tensor, n_steps_each: int, generator: GeneratorLike) -> list[float]:
    """Check the arguments shared by the progressive samplers; return σ as Python floats (the one host transfer).

    :raises ValueError: for T < 0, sigmas that are not a non-empty 1-D tensor, or per-example
        generators that do not match the batch.
    """
    if n_steps_each < 0:
        raise ValueError(f"n_steps_each must be >= 0, got {n_steps_each}")
    if sigmas.ndim != 1 or len(sigmas) == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D tensor, got shape {tuple(sigmas.shape)}")
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != x0.shape[0]:
        raise ValueError(f"got {len(generator)} per-example generators for a batch of {x0.shape[0]}")
    return [float(s) for s in sigmas.tolist()]


def final_state(steps: Iterator[tuple[int, Tensor]], x0: Tensor) -> Tensor:
    """The last state of a progressive sampler (``x0`` when it yields nothing), as an ordinary tensor."""
    x = x0
    for _, x in steps:
        pass
    return x.clone()


def annealed_langevin_progressive(score_fn: ScoreFn, x0: Tensor, sigmas: Tensor, *, n_steps_each: int,
                                  eps: float, generator: GeneratorLike = None, denoise: bool = False,
                                  convention: str = "paper", hook: Hook | None = None,
                                  ) -> Iterator[tuple[int, Tensor]]:
    """Annealed Langevin dynamics (paper Algorithm 1), yielding the state after each level.

    For i = 1..L, with α_i = ε · σ_i²/σ_L² (``convention="paper"``), T = ``n_steps_each``
    times: z ~ N(0, I); x ← x + (α_i/2) · s(x, i) + √α_i · z.

    With ``convention="reference"``, ``eps`` is the reference code's ``step_lr``:
    s_i = step_lr · σ_i²/σ_L², x ← x + s_i · s(x, i) + √(2 s_i) · z, i.e. α_i = 2 · step_lr · σ_i²/σ_L²;
    ``eps = e`` with ``"paper"`` and ``eps = e/2`` with ``"reference"`` give the same samples.

    ``denoise=True`` ends with the Tweedie step x ← x + σ_L² · s(x, L) (NCSNv2).

    Only the current state is held: memory does not grow with T or L. Arguments are
    checked here, before the first item is requested.

    :param score_fn: s(x [B, ...], levels [B] int64) → [B, ...]; level index i−1 is 0-based.
    :param x0: [B, ...] starting points (paper: uniform on [0, 1]^D).
    :param sigmas: [L] noise levels, descending.
    :param n_steps_each: T, Langevin steps per level.
    :param eps: ε (paper) or step_lr (reference).
    :param generator: None, a ``torch.Generator``, or B per-example generators (ncsn.core.rng).
    :param hook: ``hook(x, level_index) → x``, applied after every Langevin step (not after
        the denoising step).
    :return: an iterator over ``(level_index, x)``: L items with indices 0..L−1, then
        ``(L, x)`` after the denoising step when ``denoise``. Tensors are inference tensors.
    """
    sigma_list = _checked_levels(x0, sigmas, n_steps_each, generator)
    alphas = step_sizes(sigma_list, eps, convention)
    return _annealed_langevin_levels(score_fn, x0, sigma_list, alphas, n_steps_each=n_steps_each,
                                     generator=generator, denoise=denoise, hook=hook)


@torch.inference_mode()
def _annealed_langevin_levels(score_fn: ScoreFn, x0: Tensor, sigma_list: list[float], alphas: list[float], *,
                              n_steps_each: int, generator: GeneratorLike, denoise: bool,
                              hook: Hook | None) -> Iterator[tuple[int, Tensor]]:
    """The loop of Algorithm 1 (see :func:`annealed_langevin_progressive`)."""
    batch, device = x0.shape[0], x0.device
    x = x0
    levels = None
    for i, alpha in enumerate(alphas):
        # for i = 1..L: α_i = ε σ_i²/σ_L²  (alphas[i])
        levels = torch.full((batch,), i, dtype=torch.long, device=device)
        drift, diffusion = alpha / 2, math.sqrt(alpha)
        for _ in range(n_steps_each):
            # draw z_t ~ N(0, I)
            z = randn_like(x, generator)
            # x_t = x_{t−1} + (α_i/2) ∇ log q_{σ_i}(x_{t−1}) + √α_i z_t
            x = x + drift * score_fn(x, levels) + diffusion * z
            if hook is not None:
                x = hook(x, i)
        yield i, x
    if denoise:
        # Tweedie: x ← x + σ_L² s(x, σ_L)
        x = x + sigma_list[-1] ** 2 * score_fn(x, levels)
        yield len(sigma_list), x


def annealed_langevin(score_fn: ScoreFn, x0: Tensor, sigmas: Tensor, *, n_steps_each: int, eps: float,
                      generator: GeneratorLike = None, denoise: bool = False, convention: str = "paper",
                      hook: Hook | None = None) -> Tensor:
    """Annealed Langevin dynamics (paper Algorithm 1): the final state of
    :func:`annealed_langevin_progressive`, which documents the update and the arguments.

    α_i = ε · σ_i²/σ_L² (``"paper"``) or 2 · step_lr · σ_i²/σ_L² (``"reference"``, ε = step_lr);
    x ← x + (α_i/2) · s(x, i) + √α_i · z, T times per level; optional Tweedie step.

    :param x0: [B, ...] starting points.
    :return: [B, ...] samples (an ordinary tensor, not an inference tensor).
    """
    return final_state(annealed_langevin_progressive(score_fn, x0, sigmas, n_steps_each=n_steps_each, eps=eps,
                                                     generator=generator, denoise=denoise, convention=convention,
                                                     hook=hook), x0)


def langevin(score_fn: Callable[[Tensor], Tensor], x0: Tensor, *, n_steps: int, step_size: float,
             generator: GeneratorLike = None) -> Tensor:
    """Plain (unannealed) Langevin dynamics: n_steps times z ~ N(0, I); x ← x + (α/2) s(x) + √α z.

    :param score_fn: s(x [B, ...]) → [B, ...], no level argument.
    :param x0: [B, ...] starting points.
    :param step_size: α.
    :param generator: None, a ``torch.Generator``, or B per-example generators (ncsn.core.rng).
    :return: [B, ...] samples.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    drift, diffusion = step_size / 2, math.sqrt(step_size)
    with torch.inference_mode():
        x = x0
        for _ in range(n_steps):
            x = x + drift * score_fn(x) + diffusion * randn_like(x, generator)
    return x.clone()


def trained_levels(sigmas: Tensor) -> Tensor:
    """The [L] noise levels of a schedule given to :func:`ald` or ``pc``: ``sigmas`` without a trailing 0."""
    return sigmas[:-1] if len(sigmas) > 1 and float(sigmas[-1]) == 0.0 else sigmas


def level_hook(callback: Callback | None, sigmas: Tensor) -> Hook | None:
    """A sampler callback ``callback(x, σ)`` as the level-index hook of the Langevin loops."""
    if callback is None:
        return None
    values = [float(s) for s in sigmas.tolist()]
    return lambda x, level: step_callback(callback, x, values[level])


def ald_progressive(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
                    callback: Callback | None = None, n_steps_each: int, eps: float, convention: str = "paper",
                    denoise: bool = False) -> Iterator[tuple[int, Tensor]]:
    """:func:`annealed_langevin_progressive` behind the samplers' common signature (see :func:`ald`)."""
    levels = trained_levels(sigmas)
    return annealed_langevin_progressive(level_score(denoiser, levels), x, levels, n_steps_each=n_steps_each,
                                         eps=eps, generator=generator, denoise=denoise, convention=convention,
                                         hook=level_hook(callback, levels))


def ald(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
        callback: Callback | None = None, n_steps_each: int, eps: float, convention: str = "paper",
        denoise: bool = False) -> Tensor:
    """Annealed Langevin dynamics (paper Algorithm 1) on a denoiser: the score is s(x, i) = (D(x; σ_i) − x)/σ_i².

    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...], called at the levels only.
    :param x: [B, ...] starting points (paper: uniform on [0, 1]^D).
    :param sigmas: [L] the levels the network was trained on, descending (a trailing 0 is dropped).
    :param callback: ``callback(x, σ_i) → x or None`` after every Langevin step (not after the denoising step).
    :param n_steps_each: / :param eps: / :param convention: / :param denoise: as :func:`annealed_langevin`.
    :return: [B, ...] samples; L·T network evaluations (+1 with ``denoise``).
    """
    return final_state(ald_progressive(denoiser, x, sigmas, generator=generator, callback=callback,
                                       n_steps_each=n_steps_each, eps=eps, convention=convention, denoise=denoise), x)
