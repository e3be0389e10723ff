"""The samplers as plain functions, for notebooks: ``ncsn.samplers.heun(model.denoise, x, sigmas)``.

Every sampler takes one signature (k-diffusion's)::

    fn(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> Tensor

with ``denoiser(x [B, ...], sigma [B]) → D = x + σ² s(x; σ)`` (``ncsn.Model.denoise`` is one), ``x``
[B, ...] the start and ``sigmas`` descending: a schedule ending in 0 for ``euler``, ``heun`` and
``dpmpp_2m`` (:func:`karras_sigmas`), the network's trained levels for ``ald`` and ``pc``.

>>> import ncsn, torch
>>> model = ncsn.load("outputs/train")
>>> sigmas = ncsn.samplers.karras_sigmas(18, float(model.sigmas[-1]), float(model.sigmas[0]))
>>> x = ncsn.samplers.heun(model.denoise, torch.rand(4, *model.shape) + sigmas[0] * torch.randn(4, *model.shape), sigmas)

The functions live in ``ncsn.core.sampling``; this module only names them.
"""

from __future__ import annotations

from ncsn.core.sampling import (SAMPLERS, Callback, Denoiser, ald, dpmpp_2m, euler, heun, karras_sigmas, ode_start,
                                pc, progressive, sample)

__all__ = ["SAMPLERS", "Callback", "Denoiser", "ald", "dpmpp_2m", "euler", "heun", "karras_sigmas", "ode_start",
           "pc", "progressive", "sample"]
