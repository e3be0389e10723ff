"""Image grids: the layout of ``ncsn.storage.images.tile`` and the PNG that ``save_grid`` writes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ncsn.storage.images import save_grid, tile


def test_tile_places_each_image_in_row_major_order_with_white_padding() -> None:
    # image k is 2×3 pixels of value k + 1
    images = torch.arange(1, 6, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 2, 3).contiguous()
    grid = tile(images, nrow=2, padding=1)
    assert grid.shape == (1, 3 * 3 + 1, 2 * 4 + 1)  # 3 rows, 2 columns of 2×3 images, 1-pixel frame
    for k in range(5):
        top, left = (k // 2) * 3 + 1, (k % 2) * 4 + 1
        assert (grid[0, top:top + 2, left:left + 3] == k + 1).all()
    assert (grid[0, 7:9, 5:8] == 255).all()  # the empty sixth cell stays padding
    assert (grid[0, 0] == 255).all() and (grid[0, :, 0] == 255).all()
    assert int((grid < 255).sum()) == 5 * 2 * 3


def test_save_grid_writes_a_grayscale_or_rgb_png_pixel_for_pixel(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    for channels, mode in ((1, "L"), (3, "RGB")):
        images = torch.randint(0, 256, (4, channels, 5, 5), generator=gen, dtype=torch.uint8)
        path = tmp_path / f"grid{channels}.png"
        save_grid(images, path, nrow=2)
        picture = Image.open(path)
        assert picture.mode == mode and picture.size == (2 * 7 + 2, 2 * 7 + 2)
        array = np.asarray(picture).reshape(16, 16, channels)
        np.testing.assert_array_equal(array[9:14, 2:7], images[2].permute(1, 2, 0).numpy())
