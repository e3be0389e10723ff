"""Samplers of the noise levels: annealed Langevin dynamics (paper Algorithm 1) and predictor-corrector.

* :mod:`ncsn.core.sampling.langevin`: Algorithm 1, plain Langevin dynamics, the step sizes and
  NCSNv2 technique 4;
* :mod:`ncsn.core.sampling.predictor_corrector`: predictor-corrector with an optional corrector band;
* :func:`sample_progressive`: the one place that picks a sampler by name.
"""

from __future__ import annotations

from typing import Iterator

from torch import Tensor

from ncsn.core.rng import GeneratorLike
from ncsn.core.sampling.langevin import (CONVENTIONS, Hook, ScoreFn, annealed_langevin,
                                         annealed_langevin_progressive, final_state, langevin, step_sizes,
                                         technique4_eps)
from ncsn.core.sampling.predictor_corrector import (corrector_steps, predictor_corrector,
                                                    predictor_corrector_progressive)

SAMPLERS = {"ald": "annealed Langevin dynamics (Algorithm 1)", "pc": "predictor-corrector"}

__all__ = ["CONVENTIONS", "SAMPLERS", "Hook", "ScoreFn", "annealed_langevin", "annealed_langevin_progressive",
           "corrector_steps", "final_state", "langevin", "predictor_corrector", "predictor_corrector_progressive",
           "sample_progressive", "step_sizes", "technique4_eps"]


def sample_progressive(sampler: str, score_fn: ScoreFn, x0: Tensor, sigmas: Tensor, *, n_steps_each: int,
                       eps: float, convention: str = "paper", denoise: bool,
                       corrector_sigmas: tuple[float, float] | None = None, generator: GeneratorLike = None,
                       hook: Hook | None = None) -> Iterator[tuple[int, Tensor]]:
    """Run the sampler named ``sampler`` from ``x0``: ``(level, x)`` after each level (then the denoising step).

    :param sampler: ``"ald"`` (:func:`annealed_langevin_progressive`) or ``"pc"``
        (:func:`predictor_corrector_progressive`, which takes ε in the ``"paper"`` convention only).
    :param score_fn: s(x [B, ...], levels [B]) → [B, ...].
    :param x0: [B, ...] starting points.
    :param sigmas: [L] noise levels, descending.
    :param corrector_sigmas: ``pc`` only: correct at the levels with σ in [lo, hi].
    :param hook: ``hook(x, level) → x`` after every Langevin step (inpainting's constraint).
    :raises ValueError: for an unknown sampler or a setting it does not take.
    """
    if sampler == "pc":
        if convention != "paper":
            raise ValueError(f"sampler 'pc' takes eps in the 'paper' convention, got {convention!r}")
        return predictor_corrector_progressive(score_fn, x0, sigmas, n_steps_each=n_steps_each, eps=eps,
                                               generator=generator, denoise=denoise,
                                               corrector_sigmas=corrector_sigmas, hook=hook)
    if corrector_sigmas is not None:
        raise ValueError(f"corrector_sigmas is for sampler 'pc', got sampler {sampler!r}")
    if sampler == "ald":
        return annealed_langevin_progressive(score_fn, x0, sigmas, n_steps_each=n_steps_each, eps=eps,
                                             generator=generator, denoise=denoise, convention=convention, hook=hook)
    raise ValueError(f"sampler must be one of {', '.join(repr(s) for s in SAMPLERS)}, got {sampler!r}")
