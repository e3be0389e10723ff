"""Output preconditioning: how a network's raw output F becomes the score s(x̃; σ).

* ``"ncsnv2"`` (NCSNv2 technique 3): s = F/σ. The network learns σ·s, which is O(1) at every
  level, so one unconditional trunk can serve all levels (:func:`ncsnv2_score`).
* ``"edm"`` (Karras et al. 2022, Table 1): the denoiser D(x̃; σ) = c_skip x̃ + c_out F(c_in x̃; σ)
  with σ_d = ½ around the centre ½ (the scale of 2x − 1 as the networks read images in [0, 1]),

      c_skip = σ_d²/(σ² + σ_d²),   c_out = σ σ_d/√(σ² + σ_d²),   c_in = 1/√(σ² + σ_d²),

  read through Tweedie's formula s = (D − x̃)/σ² as the score

      s(x̃; σ) = −(x̃ − ½)/(σ² + σ_d²) + σ_d F/(σ √(σ² + σ_d²))        (:func:`edm_score`):

  the exact score of N(½, σ_d² I) blurred by σ, plus the network's correction, whose target
  has unit scale at every level.

The networks of ``ncsn.models`` call :func:`precondition` at the end of their ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor

SIGMA_DATA = 0.5
CENTRE = 0.5
PRECONDS = ("ncsnv2", "edm")


def ncsnv2_score(f: Tensor, sigma: Tensor) -> Tensor:
    """s = F/σ (NCSNv2 technique 3).

    :param f: [B, ...] the raw network output F.
    :param sigma: [B, 1, ...] σ of each example, broadcastable to ``f``.
    """
    return f / sigma


def edm_score(x: Tensor, sigma: Tensor, f: Tensor) -> Tensor:
    """s = −(x − ½)/(σ² + σ_d²) + σ_d F/(σ √(σ² + σ_d²)).

    :param x: [B, ...] noisy input x̃ (data range [0, 1]).
    :param sigma: [B, 1, ...] σ of each example, broadcastable to ``x``.
    :param f: [B, ...] the raw network output F.
    :return: [B, ...] the score.
    """
    var = sigma**2 + SIGMA_DATA**2
    return (CENTRE - x) / var + SIGMA_DATA * f / (sigma * torch.sqrt(var))


def precondition(precond: str, x: Tensor, sigma: Tensor, f: Tensor) -> Tensor:
    """The score of the preconditioning named ``precond`` (one of :data:`PRECONDS`).

    :param x: [B, ...] noisy input; :param sigma: [B, 1, ...]; :param f: [B, ...] raw output.
    """
    if precond == "edm":
        return edm_score(x, sigma, f)
    if precond == "ncsnv2":
        return ncsnv2_score(f, sigma)
    raise ValueError(f"precond must be one of {', '.join(repr(p) for p in PRECONDS)}, got {precond!r}")
