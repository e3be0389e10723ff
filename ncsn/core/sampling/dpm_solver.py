"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), for NCSN's variance-exploding noise.

In the half-log-SNR t = −ln σ (VE: α = 1) the probability-flow ODE dx/dσ = (x − D(x; σ))/σ has the
exact solution x(σ') = (σ'/σ) x(σ) + ∫ D, and with D held at D_i over one step

    x_{i+1} = (σ_{i+1}/σ_i) x_i − expm1(−h_i) · D_i,    h_i = t_{i+1} − t_i = ln(σ_i/σ_{i+1})     (first order)

(σ_{i+1}/σ_i = e^{−h_i}, so this is x_{i+1} = e^{−h} x_i + (1 − e^{−h}) D_i). The multistep
("2M") update replaces D_i by a linear extrapolation from the previous step's denoised output,
with r_i = h_{i−1}/h_i,

    D̃_i = (1 + 1/(2 r_i)) D_i − (1/(2 r_i)) D_{i−1},                                        (second order)

on every step but the first (no D_{i−1} yet) and the last to σ = 0 (h = ∞: x_{n} = D_{n−1}).
One network evaluation per step: n on a schedule of n + 1 levels.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike
from ncsn.core.sampling.denoiser import Callback, Denoiser, sigma_batch, step_callback
from ncsn.core.sampling.langevin import final_state
from ncsn.core.sampling.probability_flow import checked_schedule


def dpmpp_2m_progressive(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
                         callback: Callback | None = None) -> Iterator[tuple[int, Tensor]]:
    """DPM-Solver++(2M), yielding ``(i, x_{i+1})`` after each step (see :func:`dpmpp_2m`)."""
    values = checked_schedule(sigmas)
    return _dpmpp_2m_steps(denoiser, x, values, callback)


@torch.inference_mode()
def _dpmpp_2m_steps(denoiser: Denoiser, x: Tensor, values: list[float],
                    callback: Callback | None) -> Iterator[tuple[int, Tensor]]:
    previous, h_previous = None, None
    for i, (sigma, nxt) in enumerate(zip(values, values[1:])):
        denoised = denoiser(x, sigma_batch(x, sigma))
        if nxt == 0:
            # the step to σ = 0: x_n = D_{n−1}
            x_next = denoised
        else:
            # h_i = t_{i+1} − t_i, t = −ln σ
            h = math.log(sigma / nxt)
            extrapolated = denoised
            if previous is not None:
                # D̃_i = (1 + 1/(2r)) D_i − (1/(2r)) D_{i−1},  r = h_{i−1}/h_i
                r = h_previous / h
                extrapolated = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            # x_{i+1} = (σ_{i+1}/σ_i) x_i − expm1(−h_i) D̃_i
            x_next = (nxt / sigma) * x - math.expm1(-h) * extrapolated
            previous, h_previous = denoised, h
        x = step_callback(callback, x_next, nxt)
        yield i, x


def dpmpp_2m(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
             callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M) on the probability-flow ODE, in t = −ln σ (the module docstring has the update).

    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...].
    :param x: [B, ...] samples of p_σ0, e.g. σ_0 · N(0, I).
    :param sigmas: [n + 1] descending, usually ending in 0.
    :param generator: unused (deterministic); taken for the common signature.
    :param callback: ``callback(x, σ_{i+1}) → x or None`` after each step.
    :return: [B, ...] samples of p_σn (an ordinary tensor); n network evaluations.
    """
    return final_state(dpmpp_2m_progressive(denoiser, x, sigmas, callback=callback), x)
