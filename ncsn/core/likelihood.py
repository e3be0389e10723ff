"""Log-likelihood through the probability-flow ODE (Song et al. 2021, "Score-Based Generative
Modeling through SDEs", Section 4.3 and Appendix D.2), for NCSN's variance-exploding noise.

With the denoiser D(x; σ) = x + σ² s(x; σ), the probability-flow ODE of the VE process is

    dx/dσ = f(x, σ) = (x − D(x; σ)) / σ                                   (PF-ODE)

and the instantaneous change of variables (Chen et al. 2018) gives

    log p_σmin(x(σmin)) = log p_σmax(x(σmax)) + ∫_σmin^σmax ∇·f(x(σ), σ) dσ,        (Eq. 39)

with the prior p_σmax ≈ N(0, σmax² I), which holds when σmax is large against the data's spread.
The ODE is solved in τ = ln σ, where it reads dx/dτ = x − D and d(log p)/dτ = ∇·(x − D) = d − ∇·D
(d the data dimension): the same integral, better scaled for an adaptive solver across decades of σ.
The divergence is exact (d vector–Jacobian products; small d) or the Hutchinson–Skilling
estimate εᵀ (∂g/∂x) ε with one Rademacher probe ε per example, fixed along the trajectory
(unbiased: the trajectory does not depend on ε). The solver is scipy's adaptive RK45, as score SDE's.

* :func:`log_likelihood`: log p_σmin(x) in nats, one per example;
* :func:`dequantize`: uniform dequantisation of 8-bit data, x = (k + u)/256;
* :func:`bits_per_dim`: bpd = −log p(x)/(d ln 2) + 8 for data in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from ncsn.core.rng import GeneratorLike, rand_like
from ncsn.core.sampling.denoiser import Denoiser

__all__ = ["bits_per_dim", "dequantize", "gaussian_prior_log_prob", "log_likelihood", "rademacher"]


def gaussian_prior_log_prob(z: Tensor, sigma_max: float) -> Tensor:
    """log N(z; 0, σmax² I) per example.

    :param z: [B, ...]. :return: [B].
    """
    d = z[0].numel()
    return -0.5 * z.flatten(1).pow(2).sum(1) / sigma_max**2 - 0.5 * d * math.log(2 * math.pi * sigma_max**2)


def rademacher(x: Tensor, generator: GeneratorLike = None) -> Tensor:
    """±1 with probability ½ each, shaped like ``x`` (one probe per example, drawn from its generator)."""
    return torch.where(rand_like(x, generator) < 0.5, -1.0, 1.0).to(x.dtype)


def _drift_and_divergence(denoiser: Denoiser, x: Tensor, sigma: float, probe: Tensor | None) -> tuple[Tensor, Tensor]:
    """g = x − D(x; σ) (the PF-ODE in τ = ln σ) and ∇·g [B]: exact when ``probe`` is None, else εᵀ(∂g/∂x)ε."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        d_x = denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))
        if probe is not None:  # Hutchinson–Skilling: one vector–Jacobian product
            (vjp,) = torch.autograd.grad(d_x, x, probe)
            div_d = (vjp * probe).flatten(1).sum(1)
        else:  # exact: ∂D_i/∂x_i for each of the d coordinates
            flat = d_x.flatten(1)
            div_d = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(flat.shape[1]):
                (row,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i + 1 < flat.shape[1])
                div_d = div_d + row.flatten(1)[:, i]
    d = x[0].numel()
    return (x - d_x).detach(), (d - div_d).detach()


def log_likelihood(denoiser: Denoiser, x: Tensor, sigma_min: float, sigma_max: float, *,
                   exact_divergence: bool = False, generator: GeneratorLike = None, rtol: float = 1e-5,
                   atol: float = 1e-5) -> Tensor:
    """log p_σmin(x) in nats: x carried from σmin to σmax by the PF-ODE, under the prior N(0, σmax² I) (Eq. 39).

    :param denoiser: D(x [B, ...], sigma [B]) → [B, ...], differentiable in x.
    :param x: [B, ...] points (in the denoiser's space).
    :param sigma_min: the noise level whose blurred density is evaluated (a model's σ_L).
    :param sigma_max: the end of the ODE, where the prior is N(0, σmax² I) (a model's σ_1).
    :param exact_divergence: the exact divergence (d Jacobian rows; for small d and tests)
        instead of the Hutchinson estimate.
    :param generator: the Rademacher probes (a generator, or one per example, as ``ncsn.core.rng``).
    :param rtol, atol: the adaptive solver's tolerances (RK45), on the state (x, log p).
    :return: [B] float64 on the CPU.
    :raises ValueError: for 0 < σmin < σmax not holding.
    """
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min = {sigma_min}, sigma_max = {sigma_max}")
    shape, device, dtype = x.shape, x.device, x.dtype
    n = x.numel()
    probe = None if exact_divergence else rademacher(x, generator)

    def rhs(tau: float, state: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(state[:n]).to(device=device, dtype=dtype).reshape(shape)
        g, div = _drift_and_divergence(denoiser, xt, math.exp(tau), probe)
        return np.concatenate([g.double().cpu().numpy().ravel(), div.double().cpu().numpy()])

    start = np.concatenate([x.detach().double().cpu().numpy().ravel(), np.zeros(shape[0])])
    solution = solve_ivp(rhs, (math.log(sigma_min), math.log(sigma_max)), start, method="RK45", rtol=rtol,
                         atol=atol)
    if not solution.success:
        raise RuntimeError(f"the probability-flow ODE solver failed: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1])
    z, delta = end[:n].reshape(shape), end[n:]
    return gaussian_prior_log_prob(z, sigma_max) + delta


def dequantize(pixels: Tensor, generator: GeneratorLike = None) -> Tensor:
    """Uniform dequantisation of 8-bit values: x = (k + u)/256, u ~ U[0, 1), in [0, 1).

    :param pixels: uint8 [B, ...]. :return: float32 [B, ...].
    """
    if pixels.dtype != torch.uint8:
        raise ValueError(f"dequantize takes uint8 pixels, got {pixels.dtype}")
    k = pixels.float()
    return (k + rand_like(k, generator)) / 256.0


def bits_per_dim(log_prob: Tensor, dims: int) -> Tensor:
    """bpd = −log p(x)/(d ln 2) + 8: the density of dequantised data in [0, 1] as bits per 8-bit value.

    (The + 8 is log₂ 256, the volume of one quantisation bin in [0, 1]; data in [−1, 1] would give + 7.)

    :param log_prob: [B] log p(x) in nats of x in [0, 1]^d. :return: [B].
    """
    return -log_prob / (dims * math.log(2.0)) + 8.0
