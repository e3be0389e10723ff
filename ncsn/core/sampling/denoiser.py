"""The one interface every sampler takes: a denoiser D(x; σ), and the σ-step callback.

Tweedie's formula ties a score network to a denoiser (k-diffusion's ``Denoiser``, EDM Eq. 3):

    D(x; σ) = x + σ² s(x; σ)        and back        s(x; σ) = (D(x; σ) − x)/σ².

* :data:`Denoiser`: ``denoiser(x [B, ...], sigma [B]) → D [B, ...]``.
* :data:`Callback`: ``callback(x [B, ...], sigma) → x or None``, called by every sampler each
  time its state has reached noise level ``sigma`` (0.0 at the end of an ODE sampler); a tensor it
  returns replaces the state (inpainting's constraint, ``ncsn.core.inpaint``), None keeps it.
* :func:`sigma_score` / :func:`denoiser_from_levels`: the score / denoiser of a network conditioned
  on level indices, which takes its trained levels by index and any other σ only through a
  σ-conditioned path (:func:`tweedie_denoiser` turns a score of σ into a denoiser);
* :func:`level_score`: a denoiser read as the score of level indices that Algorithm 1 and
  predictor-corrector call.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[Tensor, float], Optional[Tensor]]
LevelScore = Callable[[Tensor, Tensor], Tensor]
SigmaScore = Callable[[Tensor, Tensor], Tensor]

LEVEL_RTOL = 1e-5  # a σ within this relative distance of a trained level is that level


def _per_example(sigma: Tensor, x: Tensor) -> Tensor:
    """σ [B] as [B, 1, ...], broadcastable to x [B, ...]."""
    return sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def level_indices(sigmas: Tensor, sigma: Tensor) -> Tensor | None:
    """The level index of each σ when every one is a trained level (relative tolerance 1e-5), else None.

    :param sigmas: [L] trained levels; :param sigma: [B] asked levels (> 0).
    :return: [B] int64 indices into ``sigmas``, or None.
    """
    gap = (sigma[:, None].double().log() - sigmas[None, :].double().log()).abs()
    best, index = gap.min(dim=1)
    return index if bool((best < LEVEL_RTOL).all()) else None


def sigma_score(score_levels: LevelScore, sigmas: Tensor, score_sigma: SigmaScore | None = None, *,
                name: str = "this network", hint: str = "") -> SigmaScore:
    """s(x; σ) of a noise-conditional network, for a σ [B] per example.

    A σ that is one of the trained levels goes through ``score_levels(x, index)`` (the network
    exactly as trained); any other σ through ``score_sigma(x, σ)``, when the network has one.

    :param score_levels: s(x [B, ...], levels [B] int64) → [B, ...].
    :param sigmas: [L] the trained levels, descending, on the network's device.
    :param score_sigma: s(x [B, ...], sigma [B] float) → [B, ...] for any σ, or None (RefineNet).
    :param name: how the error names the network (e.g. ``"model.arch 'ncsn'"``); :param hint: what
        the error suggests after the levels (e.g. a config key).
    :raises ValueError: (when called) for a σ that is no trained level and no ``score_sigma``:
        one line naming the levels.
    """

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = sigma.to(device=x.device, dtype=x.dtype).expand(x.shape[0])
        levels = level_indices(sigmas, sigma)
        if levels is not None:
            return score_levels(x, levels)
        if score_sigma is not None:
            return score_sigma(x, sigma)
        shown = ", ".join(f"{v:.4g}" for v in sigmas.tolist())
        asked = ", ".join(f"{v:.4g}" for v in sigma.unique().tolist())
        raise ValueError(f"sigma = {asked} is not a noise level of this network ({name} takes only its"
                         f" trained levels: {shown})" + (f"; {hint}" if hint else ""))

    return score


def tweedie_denoiser(score: SigmaScore) -> Denoiser:
    """D(x; σ) = x + σ² s(x; σ).

    :param score: s(x [B, ...], sigma [B]) → [B, ...].
    """

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = sigma.to(device=x.device, dtype=x.dtype).expand(x.shape[0])
        return x + _per_example(sigma, x) ** 2 * score(x, sigma)

    return denoiser


def denoiser_from_levels(score_levels: LevelScore, sigmas: Tensor, score_sigma: SigmaScore | None = None, *,
                         name: str = "this network", hint: str = "") -> Denoiser:
    """D(x; σ) = x + σ² s(x; σ) of a noise-conditional network: :func:`tweedie_denoiser` of :func:`sigma_score`."""
    return tweedie_denoiser(sigma_score(score_levels, sigmas, score_sigma, name=name, hint=hint))


def level_score(denoiser: Denoiser, sigmas: Tensor) -> LevelScore:
    """s(x, i) = (D(x; σ_i) − x)/σ_i²: a denoiser as the score of level indices.

    :param sigmas: [L] noise levels, descending, > 0.
    :return: s(x [B, ...], levels [B] int64) → [B, ...].
    """

    def score(x: Tensor, levels: Tensor) -> Tensor:
        sigma = sigmas.to(device=x.device, dtype=x.dtype)[levels]
        return (denoiser(x, sigma) - x) / _per_example(sigma, x) ** 2

    return score


def step_callback(callback: Callback | None, x: Tensor, sigma: float) -> Tensor:
    """x after ``callback(x, sigma)``: the tensor it returns, or x itself when it returns None (or there is none)."""
    if callback is None:
        return x
    replaced = callback(x, sigma)
    return x if replaced is None else replaced


def sigma_batch(x: Tensor, sigma: float) -> Tensor:
    """σ as the [B] tensor a denoiser takes."""
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
