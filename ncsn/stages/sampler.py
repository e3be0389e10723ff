"""The sampler a run uses, resolved once from ``sample.*``, and its runs on a loaded score model.

:class:`SamplerSpec` holds every setting that decides the samples besides the network and
the seeds: the sampler (``ald``: annealed Langevin dynamics, paper Algorithm 1; ``pc``:
predictor-corrector), T, ε as a number (``eps: auto`` resolved by NCSNv2 technique 4 for
this T and σ schedule), the step-size convention, the denoising step, and the σ band of the
levels the predictor-corrector corrects (``sample.corrector_sigmas``). A stage builds it
once (:func:`resolve_sampler`) from ``sample.*`` and the model's σ, with its own overrides
(checkpoint selection: T = ``evaluate.select_steps_each``; inpainting: ``inpaint.*``), logs
it, and the sample stage writes it into the shard manifest, where the report reads it.
:func:`sample_batch`, :func:`trajectory` and :func:`inpaint_pixels` run it on a
:class:`~ncsn.storage.score_model.ScoreModel` (the dispatch on the sampler's name is
:func:`ncsn.core.sampling.sample_progressive`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import Tensor

from ncsn.config import Config, SampleConfig
from ncsn.core.inpaint import inpaint
from ncsn.core.rng import GeneratorLike, make_generators
from ncsn.core.sampling import SAMPLERS, Hook, corrector_steps, final_state, sample_progressive, technique4_eps
from ncsn.data.transforms import to_model_input
from ncsn.storage.score_model import ScoreModel, initial_state, to_uint8

ScoreFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """A resolved sampler: what :func:`progressive` runs."""

    sampler: Literal["ald", "pc"]
    n_steps_each: int  # T, Langevin steps per level
    eps: float  # ε (paper convention) or step_lr (reference convention)
    convention: Literal["paper", "reference"]
    denoise: bool  # end with the Tweedie step x + σ_L² s(x, L)
    num_levels: int  # L of the σ schedule ε was resolved for
    eps_auto: bool = False  # ε came from NCSNv2 technique 4
    corrector_sigmas: tuple[float, float] | None = None  # pc: correct only at levels with σ in [lo, hi]
    corrected_levels: int | None = None  # how many of the L levels lie in corrector_sigmas (None: all)

    def __post_init__(self) -> None:
        if self.corrector_sigmas is not None:  # a manifest's list reads back as the tuple it was
            object.__setattr__(self, "corrector_sigmas", tuple(float(v) for v in self.corrector_sigmas))

    @property
    def evaluations_per_sample(self) -> int:
        """Network evaluations per sample: L·T (+1 denoising) for ALD; L + T·(corrected levels)
        for PC, L·(T+1) without a band (−1 without denoising)."""
        steps, levels = self.n_steps_each, self.num_levels
        if self.sampler == "pc":
            corrected = levels if self.corrected_levels is None else self.corrected_levels
            return levels + steps * corrected - (0 if self.denoise else 1)
        return levels * steps + (1 if self.denoise else 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for the shard manifest, MLflow and the report), evaluations per sample included."""
        values = dataclasses.asdict(self)
        if self.corrector_sigmas is not None:  # as JSON and YAML read it back (shard manifests compare equal)
            values["corrector_sigmas"] = list(self.corrector_sigmas)
        return {**values, "evaluations_per_sample": self.evaluations_per_sample}

    def describe(self) -> str:
        """One line naming the sampler, its T, ε and network evaluations per sample."""
        eps = f"eps = {self.eps:.3g} (auto: NCSNv2 technique 4)" if self.eps_auto else f"eps = {self.eps:g}"
        levels = "per level"
        if self.corrector_sigmas is not None:
            lo, hi = self.corrector_sigmas
            levels = f"at the {self.corrected_levels} levels with sigma in [{lo:g}, {hi:g}]"
        return (f"{SAMPLERS[self.sampler]}, T = {self.n_steps_each} steps {levels}, {eps}, "
                f"denoise = {self.denoise}, {self.evaluations_per_sample} network evaluations per sample")


def resolve_sampler(cfg: SampleConfig, sigmas: Sequence[float] | Tensor, *, sampler: str | None = None,
                    n_steps_each: int | None = None, eps: float | str | None = None,
                    denoise: bool | None = None, every_level: bool = False) -> SamplerSpec:
    """The spec of ``sample.*`` for the σ schedule ``sigmas``; each keyword overrides its key.

    :param sigmas: the model's [L] noise levels (technique 4 reads their ratio and σ_L).
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
    return SamplerSpec(sampler=name, n_steps_each=steps, eps=value, convention=cfg.convention,
                       denoise=cfg.denoise if denoise is None else denoise, num_levels=len(sigma_list),
                       eps_auto=eps == "auto", corrector_sigmas=band, corrected_levels=corrected)


def resolve_inpaint_sampler(cfg: Config, sigmas: Sequence[float] | Tensor) -> SamplerSpec:
    """``sample.*`` with the ``inpaint.*`` overrides, without a denoising step, correcting at every level."""
    ic = cfg.inpaint
    return resolve_sampler(cfg.sample, sigmas, sampler=ic.sampler, n_steps_each=ic.n_steps_each, eps=ic.eps,
                           denoise=False, every_level=True)


def progressive(spec: SamplerSpec, score_fn: ScoreFn, x0: Tensor, sigmas: Tensor, *,
                generator: GeneratorLike = None, hook: Hook | None = None) -> Iterator[tuple[int, Tensor]]:
    """Run the sampler of ``spec`` from ``x0``: ``(level, x)`` after each level (then the denoising step).

    :param score_fn: s(x [B, ...], levels [B]) → [B, ...].
    :param x0: [B, ...] starting points.
    :param sigmas: [L] noise levels, descending (L = ``spec.num_levels``).
    :param hook: ``hook(x, level) → x`` after every Langevin step (inpainting's constraint).
    """
    if len(sigmas) != spec.num_levels:
        raise ValueError(f"the sampler was resolved for {spec.num_levels} noise levels, the model has {len(sigmas)}")
    return sample_progressive(spec.sampler, score_fn, x0, sigmas, n_steps_each=spec.n_steps_each, eps=spec.eps,
                              convention=spec.convention, denoise=spec.denoise,
                              corrector_sigmas=spec.corrector_sigmas, generator=generator, hook=hook)


def sample_batch(model: ScoreModel, seeds: Sequence[int], spec: SamplerSpec) -> torch.Tensor:
    """Samples for ``seeds``, each from its own generator (``ncsn.core.rng``).

    :return: [len(seeds), *shape] float samples in model space, on the model's device.
    """
    x0, generators = initial_state(model, seeds)
    return final_state(progressive(spec, model.score(), x0, model.sigmas, generator=generators), x0)


def trajectory(model: ScoreModel, seeds: Sequence[int], spec: SamplerSpec) -> Iterator[tuple[int, torch.Tensor]]:
    """``(level, x)``: the start (level −1), then the state after each noise level (and the denoising step)."""
    x0, generators = initial_state(model, seeds)
    yield -1, x0
    yield from progressive(spec, model.score(), x0, model.sigmas, generator=generators)


def inpaint_pixels(model: ScoreModel, spec: SamplerSpec, pixels: Tensor, observed: Tensor,
                   seeds: Sequence[int]) -> Tensor:
    """Complete uint8 images with ``model`` and the sampler of ``spec`` (:func:`ncsn.core.inpaint.inpaint`).

    The pixels go to model space as the held-out images of the pipeline do (p/255, the logit
    transform when the model was trained with it; no dequantisation). Image i draws from its own
    generator seeded with ``seeds[i]``, so its completion does not depend on the other images.

    :param pixels: uint8 [B, C, H, W] in the model's channels and size.
    :param observed: bool [B, 1, H, W] (or [B, C, H, W]), True where the pixel is observed.
    :return: uint8 [B, C, H, W] on the CPU, equal to ``pixels`` wherever ``observed``.
    """
    device, lt = model.sigmas.device, model.logit_transform
    y = to_model_input(pixels.to(device), dequantize=False, logit_transform=lt, flip=False, generator=None)
    completed = inpaint(model.score(), y, observed.to(device), model.sigmas, sampler=spec.sampler,
                        n_steps_each=spec.n_steps_each, eps=spec.eps, convention=spec.convention,
                        denoise=spec.denoise, generator=make_generators(list(seeds), device))
    return torch.where(observed.cpu(), pixels.cpu(), to_uint8(completed, logit_transform=lt))
