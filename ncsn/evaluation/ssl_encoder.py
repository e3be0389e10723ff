"""A self-supervised image encoder: the offline feature extractor for data without labels.

A folder of your own images has no class labels to train the digit classifier on, and
Inception-v3's weights cannot be downloaded offline. The classifier stage then trains the same
CNN (``ncsn.evaluation.classifier.ImageClassifier``) with SimCLR's contrastive objective
(Chen et al. 2020) on the prepared training images: two random views of each image, and the
NT-Xent loss (their Eq. 1), which pulls the two views of an image together and pushes the
other images of the batch away. Its penultimate layer [B, feature_dim] is the feature space
of ``ssl_fid`` / ``ssl_kid_*`` / precision / recall (no IS: it has no classes).

The views suit 28-32 px images: a random crop of 60-100 % of the side, resized back (bilinear),
a horizontal flip, and a brightness and contrast jitter of ±40 % (for RGB also saturation, and
grey with probability 0.2). The views hold no noise, blur or occlusion, so the encoder is not
taught to ignore the defects that FID is meant to see.

An encoder trained on one dataset defines its own feature space: its FID compares runs on the
same data only. Bits/dim (``evaluate.bpd_images``) compares models across datasets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ncsn.config import ClassifierConfig
from ncsn.evaluation.classifier import ClassifierSpec, ImageClassifier, fit

TEMPERATURE = 0.5  # τ of NT-Xent; SimCLR's choice for CIFAR-10-sized batches
PROJECTION_DIM = 64  # the projection head's output z (the loss's space, not the features)
CROP_SIDE = (0.6, 1.0)  # side of the random crop, as a fraction of the image side
JITTER = 0.4  # brightness, contrast and saturation factors drawn from [1 - JITTER, 1 + JITTER]
GREY_PROBABILITY = 0.2  # RGB views turned grey


def random_view(x: Tensor, generator: torch.Generator) -> Tensor:
    """One random view of each image (see the module docstring).

    :param x: float images in [0, 1], [B, C, H, W].
    :return: [B, C, H, W] in [0, 1].
    """
    b, c = x.shape[:2]

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    side = uniform(*CROP_SIDE)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    shift_x, shift_y = ((1 - side) * uniform(-1.0, 1.0) for _ in range(2))
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = side * flip, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = side, shift_y
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    view = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def per_image(t: Tensor) -> Tensor:
        return t.to(x.device).view(b, 1, 1, 1)

    view = view * per_image(uniform(1 - JITTER, 1 + JITTER))  # brightness
    mean = view.mean(dim=(1, 2, 3), keepdim=True)
    view = mean + (view - mean) * per_image(uniform(1 - JITTER, 1 + JITTER))  # contrast
    if c == 3:
        grey = view.mean(dim=1, keepdim=True)
        saturation = per_image(uniform(1 - JITTER, 1 + JITTER))
        saturation = torch.where(per_image(torch.rand(b, generator=generator)) < GREY_PROBABILITY, 0.0, saturation)
        view = grey + (view - grey) * saturation
    return view.clamp(0.0, 1.0)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, Eq. 1), averaged over the 2B views.

    :param z1: / :param z2: projections of the two views of the same B images, [B, D].
    :return: scalar: for each view, the cross-entropy of picking its partner among the other
        2B - 1 views by cosine similarity / ``temperature``.
    """
    b = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2B, D]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is not its own partner
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, partner)


def train_ssl_encoder(images: Tensor, cfg: ClassifierConfig, *, seed: int = 0, device: torch.device | str = "cpu",
                      width: int = 16, progress: bool = True) -> ImageClassifier:
    """Adam on NT-Xent for ``cfg.n_iters`` steps of ``cfg.batch_size`` random images (two views each).

    :param images: uint8 [N, C, H, W] training images (no labels).
    :param seed: seeds initialisation, batches and views (same seed, same weights on CPU).
    :return: the encoder, in eval mode, on ``device``: ``features`` is the representation, its
        ``head`` the projection (``num_classes`` = :data:`PROJECTION_DIM`).
    """
    assert images.ndim == 4 and images.dtype == torch.uint8, \
        f"expected uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
    spec = ClassifierSpec(channels=images.shape[1], image_size=images.shape[-1], num_classes=PROJECTION_DIM,
                          width=width)
    torch.manual_seed(seed)
    model = ImageClassifier(spec, objective="simclr").to(device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    batch = min(cfg.batch_size, len(images))

    def batch_loss() -> Tensor:
        x = images[torch.randperm(len(images), generator=gen)[:batch]].float() / 255.0
        views = [random_view(x, gen).to(device).contiguous(memory_format=torch.channels_last) for _ in range(2)]
        z1, z2 = model.head(model.features(torch.cat(views))).chunk(2)
        return nt_xent(z1, z2)

    return fit(model, cfg, batch_loss, desc="ssl encoder", progress=progress)
