"""Langevin samplers: annealed (paper Algorithm 1), predictor-corrector, and plain.

* :func:`annealed_langevin` / :func:`annealed_langevin_progressive`: Algorithm 1,
  L·T network evaluations (+1 with the final denoising step).
* :func:`technique4_eps`: NCSNv2 technique 4, the ε that suits a given T.
* :func:`predictor_corrector` / :func:`predictor_corrector_progressive`: T Langevin
  corrector steps per level, then an ancestral predictor step to the next level (the
  last one is the denoising step), L·(T + 1) evaluations; with a corrector band
  (:func:`corrector_steps`) the correctors run only at the levels whose σ lies in it.

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


def corrector_steps(sigmas: list[float], n_steps_each: int,
                    corrector_sigmas: tuple[float, float] | None = None) -> list[int]:
    """Corrector steps at each level: T where lo ≤ σᵢ ≤ hi for ``corrector_sigmas`` = (lo, hi), else 0.

    With ``None`` every level gets T (Song et al. 2021's predictor-corrector). A band spends the
    correctors where the Langevin steps change the samples most. For digits that is the middle
    levels, where a digit's shape is decided, rather than the largest (the ancestral predictor
    step alone tracks the blurred data there) or the smallest (where a corrector adds pixel
    noise that the last levels and the denoising step must take out again). Clothes settle on
    their class at the largest levels and need the correctors there too: the band depends on
    the data (``profile_dataset/cpu_fashion_mnist.yaml``; docs/performance.md, sections 5e-5f).

    :param sigmas: [L] noise levels.
    :return: [L] step counts.
    """
    if corrector_sigmas is None:
        return [n_steps_each] * len(sigmas)
    lo, hi = corrector_sigmas
    return [n_steps_each if lo <= sigma <= hi else 0 for sigma in sigmas]


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


def predictor_corrector_progressive(score_fn: ScoreFn, x0: Tensor, sigmas: Tensor, *, n_steps_each: int,
                                    eps: float, generator: GeneratorLike = None, denoise: bool = True,
                                    corrector_sigmas: tuple[float, float] | None = None,
                                    hook: Hook | None = None) -> Iterator[tuple[int, Tensor]]:
    """Predictor-corrector sampling on the L noise levels (Song et al. 2021, PC with an
    ancestral predictor), yielding the state after the corrector steps of each level.

    For i = 1..L:

    * corrector, T = ``n_steps_each`` times (none at levels outside ``corrector_sigmas``):
      z ~ N(0, I); x ← x + (α_i/2) s(x, i) + √α_i z, α_i = ε σᵢ²/σ_L² (paper convention,
      as Algorithm 1);
    * predictor, the ancestral step from σᵢ to σᵢ₊₁ (σ_{L+1} = 0): the posterior of
      x at σᵢ₊₁ given x and the Tweedie estimate x + σᵢ² s(x, i) of the clean image,
      x ← x + (σᵢ² − σᵢ₊₁²) s(x, i) + σᵢ₊₁ √(1 − σᵢ₊₁²/σᵢ²) z. The last predictor
      step is the denoising step x ← x + σ_L² s(x, L), taken when ``denoise``.

    L + T·(levels in the band) network evaluations, L·(T + 1) without a band (one fewer
    without ``denoise``); T = 0 is ancestral sampling alone. Arguments are checked here, before the first item is requested.

    :param score_fn: s(x [B, ...], levels [B] int64) → [B, ...].
    :param x0: [B, ...] starting points (uniform on [0, 1]^D as Algorithm 1).
    :param sigmas: [L] noise levels, descending.
    :param n_steps_each: T ≥ 0 corrector steps per level.
    :param eps: ε of the corrector (:func:`technique4_eps` picks one for T).
    :param generator: None, a ``torch.Generator``, or B per-example generators (ncsn.core.rng).
    :param corrector_sigmas: (lo, hi): correct only at the levels with lo ≤ σᵢ ≤ hi
        (:func:`corrector_steps`); None: at every level.
    :param hook: ``hook(x, level_index) → x``, applied after every corrector step (level i) and
        after every predictor step that lands on a level (i + 1); not after the denoising step.
    :return: an iterator over ``(level_index, x)`` as :func:`annealed_langevin_progressive`:
        indices 0..L−1 after each level's correctors, then ``(L, x)`` after the denoising step.
    """
    sigma_list = _checked_levels(x0, sigmas, n_steps_each, generator)
    alphas = step_sizes(sigma_list, eps)
    steps = corrector_steps(sigma_list, n_steps_each, corrector_sigmas)
    return _predictor_corrector_levels(score_fn, x0, sigma_list, alphas, steps, generator=generator,
                                       denoise=denoise, hook=hook)


@torch.inference_mode()
def _predictor_corrector_levels(score_fn: ScoreFn, x0: Tensor, sigma_list: list[float], alphas: list[float],
                                steps: list[int], *, generator: GeneratorLike, denoise: bool,
                                hook: Hook | None) -> Iterator[tuple[int, Tensor]]:
    """The loop of :func:`predictor_corrector_progressive`; ``steps[i]`` correctors at level i."""
    batch, device = x0.shape[0], x0.device
    x = x0
    for i, (sigma, alpha, n_steps) in enumerate(zip(sigma_list, alphas, steps)):
        levels = torch.full((batch,), i, dtype=torch.long, device=device)
        drift, diffusion = alpha / 2, math.sqrt(alpha)
        for _ in range(n_steps):
            # corrector: x ← x + (α_i/2) s(x, i) + √α_i z
            x = x + drift * score_fn(x, levels) + diffusion * randn_like(x, generator)
            if hook is not None:
                x = hook(x, i)
        yield i, x
        nxt = sigma_list[i + 1] if i + 1 < len(sigma_list) else 0.0
        if nxt == 0.0 and not denoise:
            break
        # predictor: x ← x + (σᵢ² − σᵢ₊₁²) s(x, i) + σᵢ₊₁ √(1 − σᵢ₊₁²/σᵢ²) z
        x = x + (sigma ** 2 - nxt ** 2) * score_fn(x, levels)
        if nxt > 0:
            x = x + nxt * math.sqrt(1.0 - nxt ** 2 / sigma ** 2) * randn_like(x, generator)
            if hook is not None:
                x = hook(x, i + 1)
        else:
            yield len(sigma_list), x


def predictor_corrector(score_fn: ScoreFn, x0: Tensor, sigmas: Tensor, *, n_steps_each: int, eps: float,
                        generator: GeneratorLike = None, denoise: bool = True,
                        corrector_sigmas: tuple[float, float] | None = None, hook: Hook | None = None) -> Tensor:
    """Predictor-corrector sampling: the final state of :func:`predictor_corrector_progressive`,
    which documents the corrector and predictor steps and the arguments.

    :param x0: [B, ...] starting points.
    :return: [B, ...] samples (an ordinary tensor, not an inference tensor).
    """
    return final_state(predictor_corrector_progressive(score_fn, x0, sigmas, n_steps_each=n_steps_each, eps=eps,
                                                       generator=generator, denoise=denoise,
                                                       corrector_sigmas=corrector_sigmas, hook=hook), x0)
