"""Pixel transforms: stored uint8 images ↔ the model's input space, and storage-time resizing.

Training-time options (``data`` section of params.yaml), applied in this order:

* uniform dequantisation: x = (255·p + u) / 256 with u ~ U[0, 1) per pixel, p ∈ [0, 1]
  the pixel (the reference code's ``dequantize``); otherwise x = p;
* random horizontal flip of each example with probability ½ (paper: CIFAR-10, CelebA);
* the logit transform: x ← logit(λ + (1 − 2λ)·x), λ = 1e-6 (the reference's).

:func:`preprocess` applies these options to a stored batch (training, validation,
inpainting); :func:`to_model_input` is the transform itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOGIT_LAMBDA = 1e-6
FLIP_DATASETS = ("cifar10", "celeba")
_BELOW_ONE = 1.0 - 2.0 ** -24  # the largest float32 below 1


def resolve_flip(flip: bool | None, dataset: str) -> bool:
    """``data.flip``, or the paper's choice when it is None: flips for CIFAR-10 and CelebA only."""
    if flip is not None:
        return flip
    return dataset in FLIP_DATASETS


def preprocess(batch: Tensor, generator: torch.Generator | None, *, dequantize: bool, logit_transform: bool,
               flip: bool) -> Tensor:
    """Stored examples → model input.

    :param batch: uint8 [B, C, H, W] images (to [0, 1] plus dequantisation, flips and logit as
        :func:`to_model_input` does) or float [B, D] points (returned as float32, unchanged).
    :param generator: the source of the random options (see :func:`to_model_input`).
    :return: float32, the shape of ``batch``.
    """
    if batch.dtype != torch.uint8:
        return batch.float()
    return to_model_input(batch, dequantize=dequantize, logit_transform=logit_transform, flip=flip,
                          generator=generator)


def to_model_input(batch: Tensor, *, dequantize: bool, logit_transform: bool, flip: bool,
                   generator: torch.Generator | None) -> Tensor:
    """Stored pixels → model input.

    :param batch: uint8 [B, C, H, W].
    :param dequantize: add U[0, 1) to the 0–255 values before dividing by 256; the result
        lies in [0, 1) (clamped below 1, which float32 rounding could otherwise reach).
    :param logit_transform: map to logit(λ + (1 − 2λ)x) (unbounded).
    :param flip: mirror each example left–right with probability ½.
    :param generator: the only source of randomness (on ``batch.device``); the dequantisation
        noise is drawn first, then one flip coin per example.
    :return: float32 [B, C, H, W], in [0, 1] unless ``logit_transform``.
    """
    if batch.dtype != torch.uint8 or batch.ndim != 4:
        raise ValueError(f"expected uint8 images [B, C, H, W], got {batch.dtype} {tuple(batch.shape)}")
    x = batch.float()
    if dequantize:
        u = torch.rand(x.shape, generator=generator, device=x.device)
        x = ((x + u) / 256.0).clamp_(max=_BELOW_ONE)
    else:
        x = x / 255.0
    if flip:
        coins = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
        x = torch.where(coins[:, None, None, None], x.flip(-1), x)
    return logit(x) if logit_transform else x


def logit(x: Tensor) -> Tensor:
    """The logit transform of pixels in [0, 1]: logit(λ + (1 − 2λ)x), λ = ``LOGIT_LAMBDA`` (any shape)."""
    return torch.logit(LOGIT_LAMBDA + (1.0 - 2.0 * LOGIT_LAMBDA) * x)


def from_model_input(x: Tensor, *, logit_transform: bool) -> Tensor:
    """Model space → pixels in [0, 1]: the inverse of :func:`to_model_input` (flips and
    dequantisation noise are not undone).

    :param x: float [B, C, H, W] in model space (e.g. Langevin samples).
    :param logit_transform: undo the logit transform: (sigmoid(x) − λ) / (1 − 2λ).
    :return: float [B, C, H, W], clamped to [0, 1].
    """
    if logit_transform:
        x = (torch.sigmoid(x) - LOGIT_LAMBDA) / (1.0 - 2.0 * LOGIT_LAMBDA)
    return x.clamp(0.0, 1.0)


def resize_images(images: Tensor, size: int) -> Tensor:
    """Resize uint8 images to ``size × size`` (bilinear, antialiased when shrinking).

    :param images: uint8 [N, C, H, W] with H = W (a no-op when H = size).
    :return: uint8 [N, C, size, size].
    """
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], 4096):  # bounds the float32 working copy
        chunk = images[start:start + 4096].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + 4096] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
