"""Predictor-corrector sampling on the noise levels (Song et al. 2021, PC with an ancestral predictor).

T Langevin corrector steps per level, then an ancestral predictor step to the next level (the
last one is the denoising step), L·(T + 1) evaluations; with a corrector band
(:func:`corrector_steps`) the correctors run only at the levels whose σ lies in it. :func:`pc`
is the same sampler behind the samplers' common signature (a denoiser, ``sigmas``, options).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, randn_like
from ncsn.core.sampling.denoiser import Callback, Denoiser, level_score
from ncsn.core.sampling.langevin import (Hook, ScoreFn, _checked_levels, final_state, level_hook, step_sizes,
                                         trained_levels)


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


def pc_progressive(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
                   callback: Callback | None = None, n_steps_each: int, eps: float, denoise: bool = True,
                   corrector_sigmas: tuple[float, float] | None = None) -> Iterator[tuple[int, Tensor]]:
    """:func:`predictor_corrector_progressive` behind the samplers' common signature (see :func:`pc`)."""
    levels = trained_levels(sigmas)
    return predictor_corrector_progressive(level_score(denoiser, levels), x, levels, n_steps_each=n_steps_each,
                                           eps=eps, generator=generator, denoise=denoise,
                                           corrector_sigmas=corrector_sigmas, hook=level_hook(callback, levels))


def pc(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
       callback: Callback | None = None, n_steps_each: int, eps: float, denoise: bool = True,
       corrector_sigmas: tuple[float, float] | None = None) -> Tensor:
    """Predictor-corrector sampling on a denoiser: the score is s(x, i) = (D(x; σ_i) − x)/σ_i².

    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...], called at the levels only.
    :param x: [B, ...] starting points.
    :param sigmas: [L] the levels the network was trained on, descending (a trailing 0 is dropped).
    :param callback: ``callback(x, σ) → x or None`` after every corrector step and every predictor step that
        lands on a level.
    :param n_steps_each: / :param eps: / :param denoise: / :param corrector_sigmas: as :func:`predictor_corrector`.
    :return: [B, ...] samples; L·(T + 1) network evaluations without a band (−1 without ``denoise``).
    """
    return final_state(pc_progressive(denoiser, x, sigmas, generator=generator, callback=callback,
                                      n_steps_each=n_steps_each, eps=eps, denoise=denoise,
                                      corrector_sigmas=corrector_sigmas), x)
