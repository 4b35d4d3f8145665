"""Pictures for the page: grids as uint8 arrays, enlarged for display, and PNG bytes for downloads."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from imagebart.images import enlarge_factor, make_grid, to_uint8

DISPLAY_SIDE = 192  # small images (the demo's 32x32) are enlarged to at least this many pixels per tile


def grid_array(images: torch.Tensor, nrow: int, padding: int = 1) -> np.ndarray:
    """A batch (B, 3, H, W) in [-1, 1] -> one (H', W', 3) uint8 grid, white between tiles."""
    return to_uint8(make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=1.0))


def enlarge(array: np.ndarray, tile: int, min_side: int = DISPLAY_SIDE) -> np.ndarray:
    """Upscale by an integer factor (nearest) so that a ``tile``-pixel image shows ``min_side`` pixels."""
    factor = enlarge_factor(tile, min_side)
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def mask_array(mask: torch.Tensor) -> np.ndarray:
    """(H, W) 0/1 (1 = keep) -> (H, W) uint8, white = keep, black = edit."""
    return (mask.detach().float().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 (H, W[, 3]) -> the bytes of a PNG file (for download buttons)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def frame(array: np.ndarray, width: int = 2, value: int = 160) -> np.ndarray:
    """A grey border around an image, so that a white mask region shows on a white page."""
    pad = ((width, width), (width, width)) + (((0, 0),) if array.ndim == 3 else ())
    return np.pad(array, pad, constant_values=value)
