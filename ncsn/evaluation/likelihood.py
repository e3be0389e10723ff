"""Bits/dim of 8-bit images under a trained score model, through the probability-flow ODE.

The images are dequantised uniformly, x = (k + u)/256 (``ncsn.core.likelihood.dequantize``), taken
to the model's input space (the logit transform, with the log-determinant of its Jacobian, when
the run used it), and their log-density log p_σL(x) comes from ``ncsn.core.likelihood.log_likelihood``
between the model's σ_L and σ_1, with the prior N(0, σ_1² I). Then bpd = −log p/(D ln 2) + 8.

With NCSN's σ_1 of the order of the data's spread (1 for the digits), the prior N(0, σ_1² I) is
only near p_σ1: the bits/dim are then an upper bound on average (Gibbs' inequality), comparable
between runs of one σ_1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ncsn.core.likelihood import bits_per_dim, dequantize, log_likelihood
from ncsn.core.sampling.denoiser import Denoiser
from ncsn.core.rng import make_generators
from ncsn.data.transforms import LOGIT_LAMBDA, logit
from ncsn.storage.score_model import ScoreModel


def continuous_denoiser(model: ScoreModel) -> Denoiser:
    """D(x; σ) at any σ, differentiable in x (``ScoreModel.denoiser``, through ``forward_sigma``).

    :raises ValueError: for a network conditioned on its trained levels only (RefineNet).
    """
    if not hasattr(model.net, "forward_sigma"):
        arch = model.checkpoint["config"]["model"]["arch"]
        raise ValueError(f"bits/dim needs a network that takes any sigma; model.arch {arch!r} takes only its "
                         "trained levels (set evaluate.bpd_images: 0, or train model.arch 'unet')")
    return model.denoiser()


def image_bits_per_dim(model: ScoreModel, images: Tensor, *, seed: int, tolerance: float,
                       batch_size: int = 50) -> Tensor:
    """bpd of each image: dequantised with generator ``seed + i``, Hutchinson probe from the same.

    :param images: uint8 [N, C, H, W]. :param tolerance: the ODE solver's rtol = atol.
    :return: [N] float64.
    """
    denoiser = continuous_denoiser(model)
    sigmas = model.sigmas.tolist()
    device = model.sigmas.device
    was_training = model.net.training
    model.net.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            part = images[start:start + batch_size].to(device)
            generators = make_generators(range(seed + start, seed + start + len(part)), device)
            x = dequantize(part, generators)
            log_det = torch.zeros(len(part), dtype=torch.float64)
            if model.logit_transform:
                y = LOGIT_LAMBDA + (1.0 - 2.0 * LOGIT_LAMBDA) * x
                log_det = (math.log(1.0 - 2.0 * LOGIT_LAMBDA) - torch.log(y * (1 - y))).flatten(1).sum(1).double().cpu()
                x = logit(x)
            log_p = log_likelihood(denoiser, x, min(sigmas), max(sigmas), generator=generators,
                                   rtol=tolerance, atol=tolerance)
            out.append(bits_per_dim(log_p + log_det, x[0].numel()))
    finally:
        model.net.train(was_training)
    return torch.cat(out)


def likelihood_metrics(model: ScoreModel, images: Tensor, *, seed: int, tolerance: float) -> dict[str, float]:
    """``bits_per_dim`` (the mean over ``images``), its standard error, the count and the tolerance.

    :param images: uint8 [N, C, H, W] held-out images (N ≥ 2 for the standard error).
    """
    bpd = image_bits_per_dim(model, images, seed=seed, tolerance=tolerance)
    return {"bits_per_dim": float(bpd.mean()), "bits_per_dim_se": float(bpd.std() / math.sqrt(len(bpd))),
            "bpd_images": float(len(bpd)), "bpd_tolerance": tolerance}
