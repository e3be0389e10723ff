"""Samplers: annealed Langevin dynamics (paper Algorithm 1), predictor-corrector, and the ODE solvers.

Every sampler of :data:`SAMPLERS` is one plain function with one signature (k-diffusion's)::

    fn(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> Tensor

``denoiser(x [B, ...], sigma [B]) → D = x + σ² s(x; σ)`` (``ncsn.core.sampling.denoiser``),
``x`` [B, ...] the start, ``sigmas`` the descending noise levels: for the ODE solvers a schedule
ending in 0 (:func:`karras_sigmas`), for ``ald``/``pc`` the network's trained levels.

* :mod:`~ncsn.core.sampling.langevin`: Algorithm 1 (:func:`ald`), plain Langevin dynamics, the step
  sizes and NCSNv2 technique 4;
* :mod:`~ncsn.core.sampling.predictor_corrector`: predictor-corrector (:func:`pc`) with an optional
  corrector band;
* :mod:`~ncsn.core.sampling.probability_flow`: :func:`euler` and :func:`heun` (EDM Algorithm 2) on
  the probability-flow ODE;
* :mod:`~ncsn.core.sampling.dpm_solver`: :func:`dpmpp_2m` (DPM-Solver++(2M));
* :func:`progressive`: the one place that picks a sampler by name (its ``_progressive`` form);
  :func:`sample_progressive` the same for ``ald``/``pc`` on a score of level indices.
"""

from __future__ import annotations

from typing import Any, Iterator

from torch import Tensor

from ncsn.core.rng import GeneratorLike
from ncsn.core.sampling.denoiser import Callback, Denoiser, denoiser_from_levels, level_score
from ncsn.core.sampling.dpm_solver import dpmpp_2m, dpmpp_2m_progressive
from ncsn.core.sampling.langevin import (CONVENTIONS, Hook, ScoreFn, ald, ald_progressive, annealed_langevin,
                                         annealed_langevin_progressive, final_state, langevin, step_sizes,
                                         technique4_eps)
from ncsn.core.sampling.predictor_corrector import (corrector_steps, pc, pc_progressive, predictor_corrector,
                                                    predictor_corrector_progressive)
from ncsn.core.sampling.probability_flow import euler, euler_progressive, heun, heun_progressive, ode_start
from ncsn.core.sigmas import karras_sigmas

SAMPLERS = {"ald": "annealed Langevin dynamics (Algorithm 1)", "pc": "predictor-corrector",
            "euler": "Euler on the probability-flow ODE", "heun": "Heun (EDM Algorithm 2)",
            "dpmpp_2m": "DPM-Solver++(2M)"}
LEVEL_SAMPLERS = ("ald", "pc")  # Langevin chains on the trained levels (n_steps_each, eps, denoise)
ODE_SAMPLERS = ("euler", "heun", "dpmpp_2m")  # solvers of the probability-flow ODE on a schedule ending in 0
SCHEDULES = ("karras", "levels")  # the ODE solvers' σ: karras_sigmas, or the network's trained levels then 0

__all__ = ["CONVENTIONS", "LEVEL_SAMPLERS", "ODE_SAMPLERS", "SAMPLERS", "SCHEDULES", "Callback", "Denoiser", "Hook", "ScoreFn",
           "ald", "ald_progressive", "annealed_langevin", "annealed_langevin_progressive", "corrector_steps",
           "denoiser_from_levels", "dpmpp_2m", "dpmpp_2m_progressive", "euler", "euler_progressive", "final_state",
           "heun", "heun_progressive", "karras_sigmas", "langevin", "level_score", "ode_start", "pc", "pc_progressive",
           "predictor_corrector", "predictor_corrector_progressive", "progressive", "sample", "sample_progressive",
           "step_sizes", "technique4_eps"]


def progressive(sampler: str, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
                callback: Callback | None = None, **options: Any) -> Iterator[tuple[int, Tensor]]:
    """The sampler named ``sampler``, yielding ``(i, x)`` after each of its steps (levels for ``ald``/``pc``).

    :param sampler: one of :data:`SAMPLERS`.
    :param options: the sampler's own (e.g. ``churn`` for ``heun``, ``n_steps_each`` and ``eps`` for ``ald``).
    :raises ValueError: for an unknown sampler; TypeError for an option it does not take.
    """
    if sampler == "euler":
        return euler_progressive(denoiser, x, sigmas, generator=generator, callback=callback, **options)
    elif sampler == "heun":
        return heun_progressive(denoiser, x, sigmas, generator=generator, callback=callback, **options)
    elif sampler == "dpmpp_2m":
        return dpmpp_2m_progressive(denoiser, x, sigmas, generator=generator, callback=callback, **options)
    elif sampler == "ald":
        return ald_progressive(denoiser, x, sigmas, generator=generator, callback=callback, **options)
    elif sampler == "pc":
        return pc_progressive(denoiser, x, sigmas, generator=generator, callback=callback, **options)
    raise ValueError(f"sampler must be one of {', '.join(repr(s) for s in SAMPLERS)}, got {sampler!r}")


def sample(sampler: str, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
           callback: Callback | None = None, **options: Any) -> Tensor:
    """The final state of :func:`progressive`: [B, ...] samples (an ordinary tensor)."""
    return final_state(progressive(sampler, denoiser, x, sigmas, generator=generator, callback=callback,
                                   **options), x)


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
    raise ValueError(f"sampler must be one of {', '.join(repr(s) for s in LEVEL_SAMPLERS)} on a score of level"
                     f" indices, got {sampler!r}")
