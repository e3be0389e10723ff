"""A user's own images and masks for ``ncsn inpaint --images DIR --masks DIR``: found, read and checked.

Every ``*.png`` file in the images folder (not its subfolders) is an image; its mask is the PNG
of the same name in the masks folder: white (255) where the pixel is observed, black (0) where
it is to be filled, in any shape. An image is converted to the model's channels (grayscale or
RGB; an alpha channel is dropped) and must have the model's size: nothing is resized. A mask is
read as grayscale and must have its image's size.

Everything is read and checked before any sampling starts; each problem is an
:class:`ImageInputError` whose message is one line naming the file and the fix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

# 8 bits per channel; other modes (16-bit, 32-bit, float, CMYK …) are refused rather than rescaled,
# so that the observed pixels can come back exactly.
READABLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


class ImageInputError(ValueError):
    """An image or mask that ``ncsn inpaint --images`` cannot use: missing, unreadable or the wrong size."""


@dataclass(frozen=True)
class ImagePair:
    """One image and its mask, checked."""

    name: str  # file name, the same in both folders
    pixels: Tensor  # uint8 [C, S, S] in the model's channels
    observed: Tensor  # bool [1, S, S], True where the mask is white


def find_pngs(folder: str | Path, option: str) -> list[Path]:
    """The ``*.png`` files directly in ``folder`` (any case of the suffix), sorted by name.

    :param option: the command-line option that named the folder, for the messages.
    :raises ImageInputError: when ``folder`` is not a directory or holds no PNG file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageInputError(f"{option} {folder} is not a directory; give a folder of PNG files")
    found = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
                   key=lambda p: p.name)
    if not found:
        raise ImageInputError(f"{option} {folder} holds no PNG file (*.png); give a folder of PNG files")
    return found


def read_png(path: Path, mode: str, what: str) -> np.ndarray:
    """One PNG file as uint8 [H, W, C] in PIL ``mode`` (``"L"`` or ``"RGB"``).

    :param what: ``"image"`` or ``"mask"``, for the messages.
    :raises ImageInputError: unreadable, not a PNG, or not 8 bits per channel.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's own warnings: a failure is reported below
            with Image.open(path) as img:
                img.load()
                kind, source_mode = img.format, img.mode
                if kind == "PNG" and source_mode in READABLE_MODES:
                    if source_mode == "P" and "transparency" in img.info:
                        img = img.convert("RGBA")  # avoids PIL's palette-transparency warning
                    converted = img.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ImageInputError(f"cannot read {what} {path}: {first[:200]}") from None
    if kind != "PNG":
        raise ImageInputError(f"{what} {path} is a {kind} file, not a PNG; save it as PNG (lossless)")
    if source_mode not in READABLE_MODES:
        raise ImageInputError(f"{what} {path} has pixel mode {source_mode}; save it with 8 bits per channel "
                              "(grayscale, RGB or RGBA)")
    return np.asarray(converted, dtype=np.uint8).reshape(converted.height, converted.width, -1)


def read_mask(path: Path) -> Tensor:
    """A mask file → bool [1, H, W], True where white.

    :raises ImageInputError: unreadable, or a pixel neither 0 nor 255 (the message counts them).
    """
    gray = read_png(path, "L", "mask")[..., 0]
    bad = int(((gray != 0) & (gray != 255)).sum())
    if bad:
        raise ImageInputError(f"mask {path} is not binary: {bad} of {gray.size} pixels are neither 0 (black: fill)"
                              " nor 255 (white: observed); save it without anti-aliasing")
    return torch.from_numpy(gray == 255)[None]


def read_pairs(images_dir: str | Path, masks_dir: str | Path, *, channels: int, image_size: int) -> list[ImagePair]:
    """Every image of ``images_dir`` with its same-named mask from ``masks_dir``, checked.

    :param channels: the model's channels: 1 (images converted to grayscale) or 3 (to RGB).
    :param image_size: the model's side S; every image must be S×S, every mask its image's size.
    :return: the pairs in file-name order.
    :raises ImageInputError: a folder missing or without PNG files, an image without a mask,
        an unreadable file, a size mismatch or a non-binary mask.
    """
    images = find_pngs(images_dir, "--images")
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise ImageInputError(f"--masks {masks_dir} is not a directory; give a folder of PNG masks named as the images")
    missing = [p.name for p in images if not (masks_dir / p.name).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ImageInputError(f"{len(missing)} image(s) have no mask in {masks_dir}: {shown}; "
                              "add a PNG mask of the same name for each")
    mode = {1: "L", 3: "RGB"}[channels]
    pairs = []
    for path in images:
        pixels = read_png(path, mode, "image")
        height, width = pixels.shape[:2]
        if (height, width) != (image_size, image_size):
            raise ImageInputError(f"image {path} is {width}x{height} pixels; the model takes {image_size}x{image_size}"
                                  " images: resize or crop it first")
        mask_path = masks_dir / path.name
        observed = read_mask(mask_path)
        if tuple(observed.shape[1:]) != (height, width):
            raise ImageInputError(f"mask {mask_path} is {observed.shape[2]}x{observed.shape[1]} pixels, its image"
                                  f" {path} is {width}x{height}; make them the same size")
        pairs.append(ImagePair(path.name, torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous(), observed))
    return pairs
