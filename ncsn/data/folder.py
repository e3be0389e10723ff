"""``folder``: every image below a directory, centre-cropped to a square and resized.

Files are found recursively by extension (:data:`IMAGE_EXTENSIONS`, case-insensitive) and
read in sorted path order; other files are ignored. Each image is EXIF-rotated, converted
to grayscale (``channels=1``) or RGB (``channels=3``; an alpha channel is dropped), cut to
its central min(W, H) square and resized with bicubic filtering. Animated images give
their first frame. 16-bit (and 32-bit integer) grayscale images are scaled to 8 bits
(value / 257, so 65535 is white), not clipped at 255. A file that cannot be decoded is skipped; one warning lists the
skipped files.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ncsn.data.errors import DataError
from ncsn.data.progress import progress

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
DEFAULT_IMAGE_SIZE = 32
DEFAULT_CHANNELS = 3


class SkippedImagesWarning(UserWarning):
    """Some files with an image extension could not be decoded and were left out."""


def find_images(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: Path, *, image_size: int, channels: int) -> Tensor:
    """One image file → uint8 [channels, image_size, image_size].

    :raises OSError: (PIL's ``UnidentifiedImageError`` included) when the file cannot be decoded.
    """
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I"):  # I;16, I;16B, I: PIL's convert("L") would clip at 255
            wide = np.asarray(img, dtype=np.float64)
            img = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8))  # mode L
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")  # avoids PIL's palette-transparency warning
        img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((image_size, image_size), Image.Resampling.BICUBIC)
    array = np.asarray(img, dtype=np.uint8).reshape(image_size, image_size, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_folder(folder: str | Path, *, image_size: int | None, channels: int | None) -> tuple[Tensor, list[Path]]:
    """All readable images below ``folder``.

    :param image_size: side of the stored squares; None → 32.
    :param channels: 1 (grayscale) or 3 (RGB); None → 3.
    :return: images uint8 [N, C, S, S] and their paths (N entries, sorted).
    :raises DataError: when ``folder`` is not a directory or holds no readable image.
    """
    folder = Path(folder)
    size = image_size or DEFAULT_IMAGE_SIZE
    channels = channels or DEFAULT_CHANNELS
    if not folder.is_dir():
        raise DataError(f"data.folder = {str(folder)!r} is not a directory; set data.folder to a folder of images")
    images: list[Tensor] = []
    kept: list[Path] = []
    skipped: list[str] = []
    for path in progress(find_images(folder), desc=f"reading {folder}", unit="img", mininterval=2.0):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL's own warnings: the file is reported below if it fails
                images.append(read_image(path, image_size=size, channels=channels))
            kept.append(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # bad or truncated files
            skipped.append(f"{path} ({type(err).__name__}: {err})")
    if skipped:
        shown = "; ".join(skipped[:10]) + (f"; and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s) in {folder}: {shown}",
                      SkippedImagesWarning, stacklevel=2)
    if not images:
        raise DataError(f"no readable images in {folder} (looked recursively for "
                        f"{', '.join(IMAGE_EXTENSIONS)}); set data.folder to a folder of images")
    return torch.stack(images), kept
