"""The sampler a run uses, resolved once from ``sample.*``, and its runs on a loaded score model.

:class:`SamplerSpec` holds every setting that decides the samples besides the network and
the seeds. For the Langevin chains on the trained levels (``ald``: annealed Langevin dynamics,
paper Algorithm 1; ``pc``: predictor-corrector): T, ε as a number (``eps: auto`` resolved by
NCSNv2 technique 4 for this T and σ schedule), the step-size convention, the denoising step, and
the σ band of the levels the predictor-corrector corrects (``sample.corrector_sigmas``). For the
solvers of the probability-flow ODE (``euler``, ``heun``: EDM Algorithm 2, ``dpmpp_2m``): the
schedule (EDM's with ``steps`` levels over [σ_min, σ_max], by default the model's trained range,
or the trained levels themselves), ρ and Heun's churn. A stage builds it once
(:func:`resolve_sampler`) from ``sample.*`` and the model's σ, with its own overrides (checkpoint
selection: T = ``evaluate.select_steps_each``; inpainting: ``inpaint.*``), logs it, and the sample
stage writes it into the shard manifest, where the report reads it (:meth:`SamplerSpec.describe`).
:func:`sample_batch`, :func:`trajectory` and :func:`complete` run it on a
:class:`~ncsn.storage.score_model.ScoreModel` (the dispatch on the sampler's name is
:func:`ncsn.core.sampling.progressive`, and :func:`ncsn.core.sampling.sample_progressive` for the
Langevin chains on the network's level indices).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from ncsn.config import Config, SampleConfig
from ncsn.core.inpaint import inpaint, inpaint_with
from ncsn.core.rng import GeneratorLike, make_generators
from ncsn.core.sampling import (LEVEL_SAMPLERS, SAMPLERS, corrector_steps, final_state, karras_sigmas, ode_start,
                                progressive as run_sampler, sample_progressive, technique4_eps)
from ncsn.data.transforms import to_model_input
from ncsn.storage.score_model import ScoreModel, initial_state, to_uint8


@dataclass(frozen=True)
class SamplerSpec:
    """A resolved sampler: what :func:`progressive` runs."""

    sampler: str  # one of ncsn.core.sampling.SAMPLERS
    n_steps_each: int  # ald, pc: T, Langevin steps per level
    eps: float  # ald, pc: ε (paper convention) or step_lr (reference convention)
    convention: str  # "paper" | "reference"
    denoise: bool  # ald, pc: end with the Tweedie step x + σ_L² s(x, L)
    num_levels: int  # L of the model's σ schedule the spec was resolved for
    eps_auto: bool = False  # ε came from NCSNv2 technique 4
    corrector_sigmas: tuple[float, float] | None = None  # pc: correct only at levels with σ in [lo, hi]
    corrected_levels: int | None = None  # how many of the L levels lie in corrector_sigmas (None: all)
    # the ODE solvers (euler, heun, dpmpp_2m); None for ald and pc
    steps: int | None = None  # n non-zero levels of the schedule (schedule "levels": L)
    schedule: str | None = None  # "karras" | "levels"
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float | None = None  # karras only
    churn: float = 0.0  # heun: S_churn, S_tmin, S_tmax (None: no bound), S_noise
    s_tmin: float = 0.0
    s_tmax: float | None = None
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        if self.corrector_sigmas is not None:  # a manifest's list reads back as the tuple it was
            object.__setattr__(self, "corrector_sigmas", tuple(float(v) for v in self.corrector_sigmas))

    @property
    def on_levels(self) -> bool:
        """A Langevin chain on the trained levels (``ald``, ``pc``) rather than an ODE solver."""
        return self.sampler in LEVEL_SAMPLERS

    @property
    def evaluations_per_sample(self) -> int:
        """Network evaluations per sample: L·T (+1 denoising) for ALD; L + T·(corrected levels)
        for PC, L·(T+1) without a band (−1 without denoising); n for Euler and DPM-Solver++(2M),
        2n − 1 for Heun (no correction on the step to 0), n = ``steps``."""
        if self.sampler == "heun":
            return 2 * self.steps - 1
        if not self.on_levels:
            return self.steps
        steps, levels = self.n_steps_each, self.num_levels
        if self.sampler == "pc":
            corrected = levels if self.corrected_levels is None else self.corrected_levels
            return levels + steps * corrected - (0 if self.denoise else 1)
        return levels * steps + (1 if self.denoise else 0)

    def schedule_sigmas(self, model_sigmas: Tensor) -> Tensor:
        """The σ the sampler steps through, on the model's device: the [L] trained levels for ``ald``/``pc``;
        for the ODE solvers [n + 1] ending in 0, :func:`ncsn.core.sampling.karras_sigmas` or the levels then 0."""
        if self.on_levels:
            return model_sigmas
        if self.schedule == "levels":
            return torch.cat([model_sigmas, model_sigmas.new_zeros(1)])
        return karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho).to(model_sigmas.device)

    def options(self) -> dict[str, Any]:
        """The sampler's own keyword arguments for :func:`ncsn.core.sampling.progressive`."""
        if self.sampler == "ald":
            return {"n_steps_each": self.n_steps_each, "eps": self.eps, "convention": self.convention,
                    "denoise": self.denoise}
        if self.sampler == "pc":
            return {"n_steps_each": self.n_steps_each, "eps": self.eps, "denoise": self.denoise,
                    "corrector_sigmas": self.corrector_sigmas}
        if self.sampler == "heun":
            return {"churn": self.churn, "s_tmin": self.s_tmin,
                    "s_tmax": math.inf if self.s_tmax is None else self.s_tmax, "s_noise": self.s_noise}
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for the shard manifest, MLflow and the report), evaluations per sample included."""
        values = dataclasses.asdict(self)
        if self.corrector_sigmas is not None:  # as JSON and YAML read it back (shard manifests compare equal)
            values["corrector_sigmas"] = list(self.corrector_sigmas)
        return {**values, "evaluations_per_sample": self.evaluations_per_sample}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SamplerSpec:
        """The spec of :meth:`to_dict` (a shard manifest's ``sampler`` entry); keys a manifest predates take
        their defaults, ``evaluations_per_sample`` is recomputed."""
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def describe(self) -> str:
        """One line naming the sampler, its settings and network evaluations per sample."""
        evaluations = f"{self.evaluations_per_sample} network evaluations per sample"
        if not self.on_levels:
            if self.schedule == "levels":
                grid = f"{self.steps} steps on the trained levels ({self.sigma_max:g} ... {self.sigma_min:g}) then 0"
            else:
                grid = (f"{self.steps} steps on the Karras schedule (rho = {self.rho:g}) from sigma"
                        f" {self.sigma_max:g} to {self.sigma_min:g} then 0")
            churn = ""
            if self.sampler == "heun" and self.churn > 0:
                top = "inf" if self.s_tmax is None else f"{self.s_tmax:g}"
                churn = (f", churn = {self.churn:g} for sigma in [{self.s_tmin:g}, {top}],"
                         f" s_noise = {self.s_noise:g}")
            return f"{SAMPLERS[self.sampler]}, {grid}{churn}, {evaluations}"
        eps = f"eps = {self.eps:.3g} (auto: NCSNv2 technique 4)" if self.eps_auto else f"eps = {self.eps:g}"
        levels = "per level"
        if self.corrector_sigmas is not None:
            lo, hi = self.corrector_sigmas
            levels = f"at the {self.corrected_levels} levels with sigma in [{lo:g}, {hi:g}]"
        return (f"{SAMPLERS[self.sampler]}, T = {self.n_steps_each} steps {levels}, {eps}, "
                f"denoise = {self.denoise}, {evaluations}")

    def step_label(self, index: int, model_sigmas: Tensor) -> str:
        """The caption of the state after step ``index`` of :func:`progressive` (−1: the start)."""
        if index < 0:
            return "start"
        if self.on_levels:
            if index >= len(model_sigmas):
                return "denoised"
            return f"level {index}: sigma {float(model_sigmas[index]):.3g}"
        return f"step {index + 1}: sigma {float(self.schedule_sigmas(model_sigmas)[index + 1]):.3g}"


def resolve_sampler(cfg: SampleConfig, sigmas: Sequence[float] | Tensor, *, sampler: str | None = None,
                    n_steps_each: int | None = None, eps: float | str | None = None,
                    denoise: bool | None = None, every_level: bool = False) -> SamplerSpec:
    """The spec of ``sample.*`` for the σ schedule ``sigmas``; each keyword overrides its key.

    :param sigmas: the model's [L] noise levels (technique 4 reads their ratio and σ_L; the ODE
        solvers' σ range defaults to [σ_L, σ_1]).
    :param eps: a number, or ``"auto"``: NCSNv2 technique 4 for the T in use.
    :param every_level: correct at every level, whatever ``sample.corrector_sigmas`` says (inpainting).
    :raises ValueError: when ``sample.corrector_sigmas`` holds none of the levels.
    """
    sigma_list = sigmas.tolist() if isinstance(sigmas, Tensor) else [float(s) for s in sigmas]
    steps = cfg.n_steps_each if n_steps_each is None else n_steps_each
    eps = cfg.eps if eps is None else eps
    value = technique4_eps(sigma_list, steps, cfg.convention) if eps == "auto" else float(eps)
    name = cfg.sampler if sampler is None else sampler
    band = None if every_level or name != "pc" else cfg.corrector_sigmas
    corrected = None
    if band is not None:
        corrected = sum(corrector_steps(sigma_list, 1, band))
        if corrected == 0:
            raise ValueError(f"sample.corrector_sigmas = {list(band)} holds none of the model's noise levels"
                             f" ({sigma_list[0]:.3g} ... {sigma_list[-1]:.3g}); widen it or set it to null")
    ode: dict[str, Any] = {}
    if name not in LEVEL_SAMPLERS:
        on_levels = cfg.schedule == "levels"
        ode = {"steps": len(sigma_list) if on_levels else cfg.steps, "schedule": cfg.schedule,
               "sigma_min": sigma_list[-1] if on_levels or cfg.sigma_min is None else cfg.sigma_min,
               "sigma_max": sigma_list[0] if on_levels or cfg.sigma_max is None else cfg.sigma_max,
               "rho": None if on_levels else cfg.rho}
        if name == "heun":
            ode |= {"churn": cfg.churn, "s_tmin": cfg.s_tmin, "s_tmax": cfg.s_tmax, "s_noise": cfg.s_noise}
        if not ode["sigma_max"] > ode["sigma_min"]:
            raise ValueError(f"the schedule runs from sample.sigma_max = {ode['sigma_max']:g} down to sample.sigma_min"
                             f" = {ode['sigma_min']:g}: sigma_max must be the larger")
    return SamplerSpec(sampler=name, n_steps_each=steps, eps=value, convention=cfg.convention,
                       denoise=cfg.denoise if denoise is None else denoise, num_levels=len(sigma_list),
                       eps_auto=eps == "auto", corrector_sigmas=band, corrected_levels=corrected, **ode)


def resolve_inpaint_sampler(cfg: Config, sigmas: Sequence[float] | Tensor) -> SamplerSpec:
    """``sample.*`` with the ``inpaint.*`` overrides, without a denoising step, correcting at every level."""
    ic = cfg.inpaint
    return resolve_sampler(cfg.sample, sigmas, sampler=ic.sampler, n_steps_each=ic.n_steps_each, eps=ic.eps,
                           denoise=False, every_level=True)


def start_state(spec: SamplerSpec, model: ScoreModel, seeds: Sequence[int]) -> tuple[Tensor, list[torch.Generator]]:
    """x₀ for ``seeds``, one generator per sample: uniform on [0, 1)^D (Algorithm 1) for ``ald``/``pc``;
    that start blurred to the schedule's σ_0, u + σ_0 z (:func:`ncsn.core.sampling.ode_start`), for the ODE solvers.

    :return: (x0 [len(seeds), *shape] on the model's device, the generators).
    """
    if spec.on_levels:
        return initial_state(model, seeds)
    device = model.sigmas.device
    generators = make_generators(seeds, device)
    template = torch.empty(len(seeds), *model.shape, device=device)
    return ode_start(template, float(spec.schedule_sigmas(model.sigmas)[0]), generators), generators


def progressive(spec: SamplerSpec, model: ScoreModel, x0: Tensor, *,
                generator: GeneratorLike = None) -> Iterator[tuple[int, Tensor]]:
    """Run the sampler of ``spec`` on ``model`` from ``x0``: ``(i, x)`` after each level (then the denoising
    step) for ``ald``/``pc``, after each step for the ODE solvers.

    ``ald``/``pc`` call the network at its level indices (``model.score()``); the ODE solvers its denoiser
    (``model.denoiser()``: a trained level by index, another σ through ``forward_sigma``).

    :param x0: [B, ...] starting points (:func:`start_state`).
    :raises ValueError: when the model's L differs from the spec's.
    """
    sigmas = model.sigmas
    if len(sigmas) != spec.num_levels:
        raise ValueError(f"the sampler was resolved for {spec.num_levels} noise levels, the model has {len(sigmas)}")
    if spec.on_levels:
        return sample_progressive(spec.sampler, model.score(), x0, sigmas, n_steps_each=spec.n_steps_each,
                                  eps=spec.eps, convention=spec.convention, denoise=spec.denoise,
                                  corrector_sigmas=spec.corrector_sigmas, generator=generator)
    return run_sampler(spec.sampler, model.denoiser(), x0, spec.schedule_sigmas(sigmas), generator=generator,
                       **spec.options())


def sample_batch(model: ScoreModel, seeds: Sequence[int], spec: SamplerSpec) -> torch.Tensor:
    """Samples for ``seeds``, each from its own generator (``ncsn.core.rng``).

    :return: [len(seeds), *shape] float samples in model space, on the model's device.
    """
    x0, generators = start_state(spec, model, seeds)
    return final_state(progressive(spec, model, x0, generator=generators), x0)


def trajectory(model: ScoreModel, seeds: Sequence[int], spec: SamplerSpec) -> Iterator[tuple[int, torch.Tensor]]:
    """``(i, x)``: the start (−1), then the state after each step (:meth:`SamplerSpec.step_label` names it)."""
    x0, generators = start_state(spec, model, seeds)
    yield -1, x0
    yield from progressive(spec, model, x0, generator=generators)


def complete(model: ScoreModel, spec: SamplerSpec, y: Tensor, observed: Tensor, generator: GeneratorLike) -> Tensor:
    """Algorithm 2 with the sampler of ``spec``: the unobserved pixels of ``y`` (model space) completed.

    ``ald``/``pc`` run :func:`ncsn.core.inpaint.inpaint` on the network's levels; the ODE solvers
    :func:`ncsn.core.inpaint.inpaint_with` on its denoiser and schedule. Either way the observed pixels
    are re-noised to the σ each step reaches.

    :param y: [B, C, H, W] on the model's device; :param observed: 0/1 or bool, broadcastable to y (1 = observed).
    :param generator: B per-example generators (or one), on the model's device.
    :return: [B, C, H, W], equal to ``y`` wherever observed.
    """
    if spec.on_levels:
        return inpaint(model.score(), y, observed, model.sigmas, sampler=spec.sampler,
                       n_steps_each=spec.n_steps_each, eps=spec.eps, convention=spec.convention,
                       denoise=spec.denoise, generator=generator)
    return inpaint_with(spec.sampler, model.denoiser(), y, observed, spec.schedule_sigmas(model.sigmas),
                        generator=generator, **spec.options())


def inpaint_pixels(model: ScoreModel, spec: SamplerSpec, pixels: Tensor, observed: Tensor,
                   seeds: Sequence[int]) -> Tensor:
    """Complete uint8 images with ``model`` and the sampler of ``spec`` (:func:`complete`).

    The pixels go to model space as the held-out images of the pipeline do (p/255, the logit
    transform when the model was trained with it; no dequantisation). Image i draws from its own
    generator seeded with ``seeds[i]``, so its completion does not depend on the other images.

    :param pixels: uint8 [B, C, H, W] in the model's channels and size.
    :param observed: bool [B, 1, H, W] (or [B, C, H, W]), True where the pixel is observed.
    :return: uint8 [B, C, H, W] on the CPU, equal to ``pixels`` wherever ``observed``.
    """
    device, lt = model.sigmas.device, model.logit_transform
    y = to_model_input(pixels.to(device), dequantize=False, logit_transform=lt, flip=False, generator=None)
    completed = complete(model, spec, y, observed.to(device), make_generators(list(seeds), device))
    return torch.where(observed.cpu(), pixels.cpu(), to_uint8(completed, logit_transform=lt))
