"""Image grids and PNG writing without torchvision."""

import numpy as np
import torch
from PIL import Image

from imagebart.images import make_grid, save_grid, to_uint8


def test_grid_layout_places_each_image():
    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(5)])
    grid = make_grid(images, nrow=2, padding=1)
    assert grid.shape == (3, 3 * 5 + 1, 2 * 5 + 1)
    assert grid[0, 1, 1] == 0 and grid[0, 1, 6] == 1 and grid[0, 6, 1] == 2 and grid[0, 11, 1] == 4
    assert grid[0, 11, 6] == 0  # the empty cell is padding


def test_to_uint8_maps_range():
    image = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 4)
    assert to_uint8(image).tolist() == [[0, 128, 255, 255]]


def test_save_grid_writes_png(tmp_path):
    path = save_grid(torch.rand(6, 3, 8, 8) * 2 - 1, tmp_path / "sub" / "g.png", nrow=3)
    with Image.open(path) as png:
        assert png.size == (3 * 10 + 2, 2 * 10 + 2)
        assert np.asarray(png).dtype == np.uint8
