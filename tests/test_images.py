"""Image grids and PNG writing without torchvision."""

import numpy as np
import torch
from PIL import Image

import pytest

from imagebart.images import labelled_grid, make_grid, save_grid, save_labelled_grid, to_uint8


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


def test_labelled_grid_upscales_with_nearest_neighbours_and_titles_rows_and_columns(tmp_path):
    a = torch.tensor([[-1.0, 1.0], [1.0, -1.0]]).expand(3, 2, 2)  # a 2x2 checkerboard
    rows = {"first": torch.stack([a, -a, a]), "second row": torch.stack([a])}
    picture = labelled_grid(rows, column_titles=["t=1", "t=2", "t=3"], min_side=8, padding=1)
    pixels = np.asarray(picture)
    # 2-pixel images upscaled 4x: the width is 3 tiles of 8 pixels + padding
    assert picture.width == 3 * (8 + 1) + 1
    # find the first tile: the top-left 4x4 block is black, the next one white (nearest, no blur)
    tops = [y for y in range(picture.height) if (pixels[y, 1:9] < 10).all(axis=-1).sum() == 4]
    y = tops[0]
    assert (pixels[y:y + 4, 1:5] == 0).all() and (pixels[y:y + 4, 5:9] == 255).all()
    assert (pixels[y + 4:y + 8, 1:5] == 255).all() and (pixels[y + 4:y + 8, 5:9] == 0).all()
    # text above the first row (column titles and the row title) and above the second row
    assert (pixels[:y] < 128).any()
    second = tops[-1]
    assert second > y + 8 and (pixels[y + 8:second] < 128).any()
    path = save_labelled_grid(rows, tmp_path / "g.png", min_side=8)
    with Image.open(path) as png:
        assert png.size == labelled_grid(rows, min_side=8).size


def test_labelled_grid_needs_a_row():
    with pytest.raises(ValueError, match="at least one non-empty row"):
        labelled_grid({"empty": torch.zeros(0, 3, 4, 4)})
