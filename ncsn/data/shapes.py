"""A folder of generated RGB images (coloured shapes): the ``folder`` dataset, tried offline.

Each image is a vertical colour gradient with one disc, square or triangle of another colour,
at a random place and size. ``python -m ncsn.data.shapes DIR --n 200`` writes ``DIR/shape_XXXX.png``;
then::

    ncsn pipeline -S dataset=folder -S data.folder=DIR -S data.image_size=32 -S data.channels=3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SHAPES = ("disc", "square", "triangle")


def shape_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One image, uint8 [size, size, 3]."""
    top, bottom, colour = (rng.integers(0, 256, 3) for _ in range(3))
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    image = np.broadcast_to((1 - t) * top + t * bottom, (size, size, 3)).copy()
    radius = rng.uniform(0.15, 0.35) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    y, x = np.mgrid[:size, :size] + 0.5
    kind = SHAPES[rng.integers(len(SHAPES))]
    if kind == "disc":
        inside = (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2
    elif kind == "square":
        inside = (np.abs(y - cy) <= radius * 0.8) & (np.abs(x - cx) <= radius * 0.8)
    else:  # a triangle pointing up: below the apex, inside the two slanted sides
        inside = (y >= cy - radius) & (y <= cy + radius) & (np.abs(x - cx) <= (y - (cy - radius)) / 2)
    image[inside] = colour
    return image.round().astype(np.uint8)


def write_shapes(folder: str | Path, n: int, *, size: int = 32, seed: int = 0) -> list[Path]:
    """Write ``n`` images as ``folder/shape_XXXX.png``; the same seed writes the same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"shape_{i:04d}.png"
        Image.fromarray(shape_image(rng, size)).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ncsn.data.shapes", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=200, help="images to write (default 200)")
    parser.add_argument("--size", type=int, default=32, help="side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 8:
        parser.error(f"--n must be >= 1 and --size >= 8 (got --n {args.n}, --size {args.size})")
    write_shapes(args.folder, args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} images of {args.size}x{args.size} into {args.folder}")


if __name__ == "__main__":
    main()
