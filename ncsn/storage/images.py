"""Writing pictures: image grids, trajectory animations and 2-D scatter plots, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ncsn.storage.atomic import atomic_write


def tile(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: int = 255) -> torch.Tensor:
    """uint8 images [B, C, H, W] → one uint8 grid [C, rows·(H + p) + p, cols·(W + p) + p].

    ``cols = min(nrow, B)`` images per row, ``rows = ⌈B / cols⌉``, separated and framed by
    ``padding`` pixels of ``pad_value`` (the layout of ``torchvision.utils.make_grid``; kept
    here so that writing a picture does not import torchvision, which costs seconds per process).
    """
    b, c, h, w = images.shape
    cols = min(nrow, b)
    rows = -(-b // cols)
    grid = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value,
                      dtype=torch.uint8)
    for k in range(b):
        top, left = (k // cols) * (h + padding) + padding, (k % cols) * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = images[k]
    return grid


def grid_image(images: torch.Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """uint8 images [B, C, H, W] → one PIL grid with ``nrow`` images per row (white padding)."""
    array = tile(images.to(torch.uint8).cpu(), nrow, padding).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if images.shape[1] == 1 else array)


def save_image(picture: Image.Image, path: str | Path) -> None:
    """Write a PIL image as a PNG."""
    atomic_write(path, lambda f: picture.save(f, format="PNG"))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> None:
    """Write uint8 images [B, C, H, W] as a PNG grid."""
    image = grid_image(images, nrow)
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Write one uint8 image [C, H, W] (C = 1: grayscale, 3: RGB) as a PNG, pixel for pixel."""
    array = image.permute(1, 2, 0).cpu().numpy()
    picture = Image.fromarray(array[..., 0] if image.shape[0] == 1 else array)
    atomic_write(path, lambda f: picture.save(f, format="PNG"))


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 300) -> None:
    """Write PIL frames as a looping GIF (the last frame held longer)."""
    durations = [duration_ms] * (len(frames) - 1) + [duration_ms * 5]
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=list(frames[1:]),
                                                  duration=durations, loop=0))


def scatter_image(points: torch.Tensor, title: str = "", limit: float = 10.0) -> Image.Image:
    """2-D points [N, 2] → a PIL scatter plot (for vector data such as the toy mixture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    pts = points.detach().cpu().float()
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_title(title)
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba()))
    plt.close(fig)
    return image.convert("RGB")
