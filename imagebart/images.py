"""Image tensors <-> pictures without torchvision: grids, uint8 conversion, PNG writing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# the suffixes read as images wherever a folder is scanned (datasets, the inpaint CLI); PIL reads them all
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Tile a batch (B, C, H, W) into one (C, H', W') image, row-major, ``nrow`` per row."""
    if images.dim() != 4:
        raise ValueError(f"make_grid expects (B, C, H, W) images, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = math.ceil(b / ncol)
    grid = images.new_full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(b):
        r, k = divmod(i, ncol)
        top, left = r * (h + padding) + padding, k * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8 (grey images keep one channel)."""
    image = ((image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round()
    array = image.to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a (C, H, W) image in [-1, 1] as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write a batch (B, C, H, W) in [-1, 1] as one grid PNG."""
    return save_image(make_grid(images.detach().float().cpu(), nrow=nrow, pad_value=1.0), path)

