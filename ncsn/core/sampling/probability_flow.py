"""Solvers of the probability-flow ODE of NCSN's noise (Karras et al. 2022, "EDM").

Data blurred by N(0, σ² I) have the marginals p_σ; the ODE (EDM Eq. 4 with s(t) = 1, σ(t) = t)

    dx/dσ = −σ ∇ₓ log p_σ(x) = (x − D(x; σ))/σ                                        (PF-ODE)

carries a sample of p_σmax to one of p_σ for every σ below it. Step-size convention: a step goes
from σ_i to σ_{i+1} of a descending ``sigmas`` ([n + 1], usually :func:`ncsn.core.sigmas.karras_sigmas`,
ending in 0), so ``h = σ_{i+1} − σ_i < 0``.

* :func:`euler`: x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i, d_i = (x_i − D(x_i; σ_i))/σ_i: n evaluations, first order.
* :func:`heun`: EDM Algorithm 2 (second order, optional churn): 2n − 1 evaluations.

Both take a denoiser (``ncsn.core.sampling.denoiser``); noise comes only from ``generator``
(``ncsn.core.rng``), device and dtype follow ``x``.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from ncsn.core.rng import GeneratorLike, rand_like, randn_like
from ncsn.core.sampling.denoiser import Callback, Denoiser, sigma_batch, step_callback
from ncsn.core.sampling.langevin import final_state


def checked_schedule(sigmas: Tensor) -> list[float]:
    """``sigmas`` as Python floats (one host transfer), checked: [n + 1], n ≥ 1, descending, > 0 but the last.

    :raises ValueError: naming what is wrong.
    """
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D tensor of n + 1 >= 2 levels, got shape {tuple(sigmas.shape)}")
    values = [float(s) for s in sigmas.tolist()]
    if not all(a > b for a, b in zip(values, values[1:])) or not values[-1] >= 0:
        raise ValueError(f"sigmas must be strictly descending and >= 0, got {values[0]:.4g} ... {values[-1]:.4g}")
    return values


def ode_start(like: Tensor, sigma_max: float, generator: GeneratorLike = None) -> Tensor:
    """x₀ = u + σ_max z, u ~ U[0, 1)^D, z ~ N(0, I): Algorithm 1's uniform start blurred to σ_max, a draw
    of p_σmax for data spread over [0, 1] (the VE prior N(0, σ_max² I) centred on the data's range).

    :param like: [B, ...] the shape, dtype and device. Draws u, then z, from ``generator``.
    """
    u = rand_like(like, generator)
    return u + sigma_max * randn_like(like, generator)


def euler_progressive(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
                      callback: Callback | None = None) -> Iterator[tuple[int, Tensor]]:
    """Euler's method on the PF-ODE, yielding ``(i, x_{i+1})`` after each step (see :func:`euler`)."""
    values = checked_schedule(sigmas)
    return _euler_steps(denoiser, x, values, callback)


@torch.inference_mode()
def _euler_steps(denoiser: Denoiser, x: Tensor, values: list[float],
                 callback: Callback | None) -> Iterator[tuple[int, Tensor]]:
    for i, (sigma, nxt) in enumerate(zip(values, values[1:])):
        # d_i = (x_i − D(x_i; σ_i))/σ_i
        d = (x - denoiser(x, sigma_batch(x, sigma))) / sigma
        # x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i
        x = step_callback(callback, x + (nxt - sigma) * d, nxt)
        yield i, x


def euler(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
          callback: Callback | None = None) -> Tensor:
    """Euler's method on the probability-flow ODE dx/dσ = (x − D(x; σ))/σ.

    For i = 0..n−1: d_i = (x_i − D(x_i; σ_i))/σ_i; x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i. The step to
    σ = 0 lands on D(x; σ_{n−1}), the Tweedie denoising step. n network evaluations, global error O(h).

    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...].
    :param x: [B, ...] samples of p_σ0, e.g. σ_0 · N(0, I) (the VE prior).
    :param sigmas: [n + 1] descending, usually ending in 0.
    :param generator: unused (the ODE is deterministic); taken for the common signature.
    :param callback: ``callback(x, σ_{i+1}) → x or None`` after each step.
    :return: [B, ...] samples of p_σn (an ordinary tensor).
    """
    return final_state(euler_progressive(denoiser, x, sigmas, callback=callback), x)


def churn_gamma(sigma: float, n: int, churn: float, s_tmin: float, s_tmax: float) -> float:
    """EDM Algorithm 2, line 4: γ_i = min(S_churn/N, √2 − 1) when S_tmin ≤ σ_i ≤ S_tmax, else 0."""
    return min(churn / n, math.sqrt(2.0) - 1.0) if churn > 0 and s_tmin <= sigma <= s_tmax else 0.0


def heun_progressive(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
                     callback: Callback | None = None, churn: float = 0.0, s_tmin: float = 0.0,
                     s_tmax: float = math.inf, s_noise: float = 1.0) -> Iterator[tuple[int, Tensor]]:
    """EDM Algorithm 2, yielding ``(i, x_{i+1})`` after each step (see :func:`heun`)."""
    values = checked_schedule(sigmas)
    if churn < 0 or s_noise < 0:
        raise ValueError(f"churn and s_noise must be >= 0, got churn={churn}, s_noise={s_noise}")
    return _heun_steps(denoiser, x, values, generator, callback, churn, s_tmin, s_tmax, s_noise)


@torch.inference_mode()
def _heun_steps(denoiser: Denoiser, x: Tensor, values: list[float], generator: GeneratorLike,
                callback: Callback | None, churn: float, s_tmin: float, s_tmax: float,
                s_noise: float) -> Iterator[tuple[int, Tensor]]:
    n = len(values) - 1
    for i, (sigma, nxt) in enumerate(zip(values, values[1:])):
        # γ_i = min(S_churn/N, √2 − 1) if S_tmin ≤ σ_i ≤ S_tmax else 0
        gamma = churn_gamma(sigma, n, churn, s_tmin, s_tmax)
        # σ̂_i = σ_i (1 + γ_i);  x̂_i = x_i + √(σ̂_i² − σ_i²) ε_i,  ε_i ~ N(0, S_noise² I)
        sigma_hat = sigma * (1.0 + gamma)
        x_hat = x
        if gamma > 0:
            x_hat = x + math.sqrt(sigma_hat ** 2 - sigma ** 2) * s_noise * randn_like(x, generator)
        # d_i = (x̂_i − D(x̂_i; σ̂_i))/σ̂_i;  x_{i+1} = x̂_i + (σ_{i+1} − σ̂_i) d_i
        d = (x_hat - denoiser(x_hat, sigma_batch(x, sigma_hat))) / sigma_hat
        x_next = x_hat + (nxt - sigma_hat) * d
        if nxt > 0:
            # d'_i = (x_{i+1} − D(x_{i+1}; σ_{i+1}))/σ_{i+1};  x_{i+1} = x̂_i + (σ_{i+1} − σ̂_i)(½ d_i + ½ d'_i)
            d_prime = (x_next - denoiser(x_next, sigma_batch(x, nxt))) / nxt
            x_next = x_hat + (nxt - sigma_hat) * (0.5 * d + 0.5 * d_prime)
        x = step_callback(callback, x_next, nxt)
        yield i, x


def heun(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: GeneratorLike = None,
         callback: Callback | None = None, churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
         s_noise: float = 1.0) -> Tensor:
    """EDM Algorithm 2 ("stochastic sampler"): Heun's method on the PF-ODE with optional churn.

    For i = 0..n−1 (N = n steps):

    * churn: γ_i = min(S_churn/N, √2 − 1) where S_tmin ≤ σ_i ≤ S_tmax, else 0; σ̂_i = σ_i (1 + γ_i);
      x̂_i = x_i + √(σ̂_i² − σ_i²) · S_noise · z, z ~ N(0, I) (nothing is drawn where γ_i = 0);
    * Euler step: d_i = (x̂_i − D(x̂_i; σ̂_i))/σ̂_i; x_{i+1} = x̂_i + (σ_{i+1} − σ̂_i) d_i;
    * correction, except on the step to σ = 0: d'_i = (x_{i+1} − D(x_{i+1}; σ_{i+1}))/σ_{i+1};
      x_{i+1} = x̂_i + (σ_{i+1} − σ̂_i)(d_i + d'_i)/2.

    2n − 1 network evaluations on a schedule ending in 0 (2n otherwise); with ``churn = 0`` it is
    deterministic and second order (global error O(h²)). EDM Table 5 tunes the churn per model
    (ImageNet-64: S_churn 80, S_tmin 0.05, S_tmax 50, S_noise 1.003); EDM's data lie in [−1, 1],
    twice the scale of the [0, 1] data here, so its σ thresholds halve.

    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...].
    :param x: [B, ...] samples of p_σ0, e.g. σ_0 · N(0, I).
    :param sigmas: [n + 1] descending, usually ending in 0.
    :param generator: the churn noise: None, a ``torch.Generator`` or B per-example generators.
    :param callback: ``callback(x, σ_{i+1}) → x or None`` after each step.
    :param churn: / :param s_tmin: / :param s_tmax: / :param s_noise: S_churn, S_tmin, S_tmax, S_noise.
    :return: [B, ...] samples of p_σn (an ordinary tensor).
    """
    return final_state(heun_progressive(denoiser, x, sigmas, generator=generator, callback=callback, churn=churn,
                                        s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise), x)

