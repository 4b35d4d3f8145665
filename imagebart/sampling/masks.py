"""Editing masks: which pixels / tokens to keep (1) and which to generate (0).

A mask is made at image resolution, (H, W) float 0/1, and brought to the token grid (h, w) by
nearest-neighbour resizing, as the original inpainting app did (``F.interpolate`` "nearest": a
token takes the value of the top-left pixel of its patch).

Presets (the original app's options, plus an explicit keep/edit of either half):

- ``upper_half`` (also ``keep_upper``, ``complete_lower``): keep the upper half, generate the lower one;
- ``lower_half`` (also ``keep_lower``, ``complete_upper``): keep the lower half, generate the upper
  one. This is what the original app's "upper-half completion" did (it kept rows ``H//2:``);
- ``centre_window(size)``: window inpainting, generate a centred square window;
- ``outpaint(size)``: keep a centred window, generate the border;
- a user mask image (:func:`mask_from_image` / :func:`load_mask`).

``size`` is a fraction of the side (a float in (0, 1]) or a side length in pixels (an int).
A CLI spec (:func:`parse_mask`) is a preset name with an optional ``:size`` or a file path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from imagebart.images import declares_alpha
from imagebart.util import is_integer, is_number

Size = Union[int, float]

PRESETS = ("upper_half", "lower_half", "centre", "outpaint", "keep_all", "edit_all")
ALIASES = {"center": "centre", "centre_window": "centre", "center_window": "centre", "window": "centre",
           "inpaint": "centre", "upper": "upper_half", "lower": "lower_half",
           # unambiguous names for the halves: what is kept, or what is completed
           "keep_upper": "upper_half", "complete_lower": "upper_half",
           "keep_lower": "lower_half", "complete_upper": "lower_half"}
DEFAULT_WINDOW = {"centre": 0.25, "outpaint": 0.5}  # the original app's defaults: H//4 and H//2


# helpers


def _check_hw(height, width) -> Tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if not is_integer(value) or value < 1:
            raise ValueError(f"mask {name} must be a positive int, got {value!r}")
    return int(height), int(width)


def _window_side(size: Size, side: int) -> int:
    """Window side in pixels from a fraction (float) or a pixel count (int)."""
    if not is_number(size):
        raise ValueError(f"window size must be a fraction in (0, 1] (float) or pixels (int), got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0.0 < size <= 1.0:
            raise ValueError(f"window size as a fraction must lie in (0, 1], got {size}")
        return max(1, int(round(float(size) * side)))
    if not 1 <= size <= side:
        raise ValueError(f"window size in pixels must lie in 1..{side} (the image side), got {size}")
    return int(size)


def _centre_box(height: int, width: int, size: Size) -> Tuple[slice, slice]:
    """Rows and columns of the centred window; the same placement as the original app."""
    sh, sw = _window_side(size, height), _window_side(size, width)
    top, left = (height - sh) // 2, (width - sw) // 2
    return slice(top, top + sh), slice(left, left + sw)


# presets (1 = keep, 0 = edit), (H, W) float32


def keep_all(height: int, width: int) -> torch.Tensor:
    """Nothing to edit: the chain reproduces the reconstruction."""
    height, width = _check_hw(height, width)
    return torch.ones(height, width)


def edit_all(height: int, width: int) -> torch.Tensor:
    """Everything is generated: plain sampling."""
    height, width = _check_hw(height, width)
    return torch.zeros(height, width)


def upper_half(height: int, width: int) -> torch.Tensor:
    """Keep rows ``:H//2`` and generate the lower half."""
    mask = edit_all(height, width)
    mask[: height // 2] = 1.0
    return mask


def lower_half(height: int, width: int) -> torch.Tensor:
    """Keep rows ``H//2:`` and generate the upper half (the original's "upper-half completion")."""
    mask = edit_all(height, width)
    mask[height // 2:] = 1.0
    return mask


def centre_window(height: int, width: int, size: Size = DEFAULT_WINDOW["centre"]) -> torch.Tensor:
    """Inpainting: keep everything but a centred window of ``size``."""
    mask = keep_all(height, width)
    rows, cols = _centre_box(height, width, size)
    mask[rows, cols] = 0.0
    return mask


def outpaint(height: int, width: int, size: Size = DEFAULT_WINDOW["outpaint"]) -> torch.Tensor:
    """Outpainting: keep a centred window of ``size`` and generate the border around it."""
    mask = edit_all(height, width)
    rows, cols = _centre_box(height, width, size)
    mask[rows, cols] = 1.0
    return mask


def preset_mask(name: str, height: int, width: int, size: Size | None = None) -> torch.Tensor:
    """A preset by name (aliases such as ``center`` accepted); ``size`` only for windows."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown mask preset {name!r}; expected one of {list(PRESETS)} or a mask image file")
    if key in DEFAULT_WINDOW:
        size = DEFAULT_WINDOW[key] if size is None else size
        return (centre_window if key == "centre" else outpaint)(height, width, size)
    if size is not None:
        raise ValueError(f"mask preset {key!r} takes no size, got {size!r}")
    return {"upper_half": upper_half, "lower_half": lower_half, "keep_all": keep_all,
            "edit_all": edit_all}[key](height, width)


# user masks


def _grey_with_alpha(image: Image.Image) -> np.ndarray:
    """(H, W) float grey in [0, 1]; an alpha channel is laid over black (transparent = edit)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode in ("I", "F"):
        grey = np.asarray(image, dtype=np.float32)
        return grey / 255.0 if grey.max(initial=0.0) > 1.0 else grey
    if not declares_alpha(image):
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    grey_alpha = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32) / 255.0  # (H, W, 2)
    return grey_alpha[..., 0] * grey_alpha[..., 1]


def _crop_to_aspect(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred window of ``grey`` with the target's aspect ratio (how input images are cropped)."""
    h, w = grey.shape
    if h * width == w * height:
        return grey
    if w * height > h * width:  # too wide
        new_w = max(1, round(h * width / height))
        left = (w - new_w) // 2
        return grey[:, left:left + new_w]
    new_h = max(1, round(w * height / width))
    top = (h - new_h) // 2
    return grey[top:top + new_h]


def mask_from_image(image: Image.Image, size: Sequence[int], crop: bool = True) -> torch.Tensor:
    """A PIL mask image of any size and mode -> (H, W) float 0/1 at ``size`` = (H, W).

    Converted to grey (white = keep), centre-cropped to the target's aspect ratio like the input
    images (``crop=False`` stretches instead), resized bilinearly, then binarised at 0.5.
    """
    height, width = _check_hw(*size)
    if not isinstance(image, Image.Image):
        raise TypeError(f"mask_from_image expects a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"mask image is empty ({image.width}x{image.height} pixels)")
    grey = _grey_with_alpha(image)  # (h0, w0)
    if not np.isfinite(grey).all():
        raise ValueError("mask image holds NaN or infinite values")
    if crop:
        grey = _crop_to_aspect(grey, height, width)
    if grey.shape != (height, width):
        resized = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))  # mode F
        grey = np.asarray(resized.resize((width, height), resample=Image.BILINEAR), dtype=np.float32)
    return as_mask_tensor(grey)


def load_mask(path: str | os.PathLike, size: Sequence[int], crop: bool = True) -> torch.Tensor:
    """Read a mask image file (white = keep, black = edit) as (H, W) float 0/1 at ``size``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return mask_from_image(image, size, crop=crop)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read mask file {path} as an image: {err}") from err


def _parse_size(text: str, spec: str) -> Size:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise ValueError(f"mask spec {spec!r}: window size {text!r} is neither a fraction (e.g. 0.5) "
                         f"nor a pixel count (e.g. 64)") from None


def parse_mask(spec: str, size: Sequence[int]) -> torch.Tensor:
    """A CLI mask spec -> (H, W) float 0/1 at ``size`` = (H, W).

    ``upper_half``, ``lower_half``, ``centre[:size]``, ``outpaint[:size]``, ``keep_all``,
    ``edit_all``, or the path of a mask image (an existing file wins over a preset name).
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ValueError(f"mask spec must be a preset name or a file path, got {spec!r}")
    spec = str(spec).strip()
    if Path(spec).is_file():
        return load_mask(spec, size)
    name, _, value = spec.partition(":")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in PRESETS:
        raise ValueError(f"mask {spec!r} is neither an existing file nor a preset; presets: "
                         f"{list(PRESETS)} (windows take ':fraction' or ':pixels', e.g. 'centre:0.5')")
    window = _parse_size(value.strip(), spec) if value.strip() else None
    return preset_mask(key, *size, size=window)


# tensors


def as_mask_tensor(mask, name: str = "mask") -> torch.Tensor:
    """Any array-like of 0/1 (or [0, 1] values) -> float tensor binarised at 0.5."""
    if isinstance(mask, Image.Image):
        raise TypeError(f"{name} is a PIL image; convert it with mask_from_image(image, size) first")
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if mask.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(mask.shape)})")
    if mask.dtype == torch.bool:
        return mask.float()
    mask = mask.float()
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise ValueError(f"{name} values must lie in [0, 1] (1 = keep, 0 = edit); got "
                         f"{mask.min().item()}..{mask.max().item()}")
    return (mask >= 0.5).float()


def latent_mask(mask, latent_shape: Sequence[int]) -> torch.Tensor:
    """Resize a mask (..., H, W) to the token grid (..., h, w) by nearest neighbour (0/1 float)."""
    h, w = _check_hw(*latent_shape)
    mask = as_mask_tensor(mask)
    if mask.dim() < 2:
        raise ValueError(f"mask must have at least 2 dims (..., H, W), got shape {tuple(mask.shape)}")
    lead = mask.shape[:-2]
    if tuple(mask.shape[-2:]) == (h, w):
        return mask.clone()
    grid = mask.reshape(-1, 1, *mask.shape[-2:])  # (N, 1, H, W)
    small = F.interpolate(grid, size=(h, w), mode="nearest")  # (N, 1, h, w)
    return small.reshape(*lead, h, w)


def token_keep_mask(mask, batch_size: int, latent_shape: Sequence[int]) -> torch.Tensor:
    """Any mask form -> (B, L) bool on the token grid (True = keep).

    Accepted: (H, W), (B, H, W), (B, 1, H, W) at image or token resolution, or flat (L,) / (B, L).
    """
    h, w = _check_hw(*latent_shape)
    mask = as_mask_tensor(mask)
    if mask.dim() == 1:  # (L,) flat latent mask
        if mask.numel() != h * w:
            raise ValueError(f"a 1-D mask must hold L = {h}x{w} = {h * w} values, got {mask.numel()}")
        mask = mask.reshape(h, w)
    elif mask.dim() == 2 and tuple(mask.shape) == (batch_size, h * w) and (h, w) != tuple(mask.shape):
        mask = mask.reshape(batch_size, h, w)  # (B, L) flat latent masks
    elif mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"a 4-D mask must be (B, 1, H, W), got shape {tuple(mask.shape)}")
        mask = mask[:, 0]
    elif mask.dim() > 4:
        raise ValueError(f"mask must be (H, W), (B, H, W), (B, 1, H, W) or (h*w,), got shape {tuple(mask.shape)}")
    small = latent_mask(mask, (h, w))  # (h, w) or (N, h, w)
    if small.dim() == 3 and small.shape[0] not in (1, batch_size):
        raise ValueError(f"mask holds {small.shape[0]} masks for a batch of {batch_size}")
    return small.reshape(-1, h * w).expand(batch_size, h * w).bool()  # (B, L)


def grey_out(images: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """The masked input for display: edited pixels set to ``fill`` (0 = mid grey in [-1, 1])."""
    mask = as_mask_tensor(mask).to(images)
    if mask.dim() == 2:
        mask = mask[None, None]  # (1, 1, H, W)
    elif mask.dim() == 3:
        mask = mask[:, None]  # (B, 1, H, W)
    if mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask of size {tuple(mask.shape[-2:])} does not match images of size "
                         f"{tuple(images.shape[-2:])}")
    return images * mask + fill * (1.0 - mask)


def feathered(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A keep-mask (..., H, W) that fades from 1 to 0 over ``radius`` pixels INSIDE the kept region,
    and stays 0 wherever the mask edits: pasting the original back through it leaves no hard seam."""
    mask = as_mask_tensor(mask)
    if not is_integer(radius) or radius < 0:
        raise ValueError(f"feather radius must be an integer >= 0 (pixels), got {radius!r}")
    if radius == 0:
        return mask
    lead = mask.shape[:-2]
    grid = mask.reshape(-1, 1, *mask.shape[-2:])  # (N, 1, H, W)
    kernel = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1, dtype=grid.dtype)
    soft = F.conv2d(F.pad(grid, [radius] * 4, mode="replicate"), kernel) / kernel.numel()  # (N, 1, H, W) box blur
    return (soft * grid).reshape(*lead, *mask.shape[-2:])
