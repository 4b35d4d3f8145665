"""Image tensors <-> pictures without torchvision: grids, uint8 conversion, PNG writing.

Every result file (PNGs here, settings and checkpoints elsewhere) is written through
:func:`atomic_path`: a temporary file in the destination folder, flushed to disk, then renamed
over the target, so a crash or a kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# the suffixes read as images wherever a folder is scanned (datasets, the inpaint CLI); PIL reads them all
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")  # PIL modes with an alpha channel


def declares_alpha(image: Image.Image) -> bool:
    """Whether a picture carries transparency (an alpha channel or a transparent colour), used or not."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


class ResultWriteError(ValueError):
    """A result file could not be written (full disk, read-only folder); the message names it."""


# atomic files


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the body has written it, fsync and rename it to ``path``.

    The temporary file lives in the destination folder because a rename is only atomic within one
    filesystem (a temporary file in ``$TMPDIR`` would be copied, and a kill during the copy
    truncates the target). Errors from the disk become :class:`ResultWriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
    except OSError as err:
        raise ResultWriteError(f"cannot write {path}: {err.strerror or err}") from err
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise ResultWriteError(f"cannot write {path}: {err.strerror or err}; free space or fix the folder's "
                               "permissions, then re-run the same command to resume") from err
    finally:
        tmp.unlink(missing_ok=True)


def non_finite_keys(value: Any, where: str = "") -> list:
    """The keys (``a.b[2]``) of every NaN or infinite float in nested dicts and lists."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "<value>"]
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in non_finite_keys(item, f"{where}.{key}".lstrip("."))]
    if isinstance(value, (list, tuple)):
        return [k for i, item in enumerate(value) for k in non_finite_keys(item, f"{where}[{i}]")]
    return []


def strict_json(data: Any) -> str:
    """JSON text that every parser reads: NaN and infinities are refused, naming their keys."""
    bad = non_finite_keys(data)
    if bad:
        raise ValueError(f"cannot write {', '.join(bad)} to JSON: NaN and infinity are not JSON numbers")
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as strict JSON, atomically."""
    text = strict_json(data)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


# pictures


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
    """Write a (C, H, W) image in [-1, 1] as PNG (atomically), creating the folder."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write a batch (B, C, H, W) in [-1, 1] as one grid PNG."""
    return save_image(make_grid(images.detach().float().cpu(), nrow=nrow, pad_value=1.0), path)


def image_is_intact(path: str | Path) -> bool:
    """Whether ``path`` is a complete, decodable image (a resumed run re-writes the others)."""
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


READABLE_SIDE = 96  # saved pictures of small images (the demo's 32x32) enlarge them to at least this many pixels


def enlarge_factor(side: int, min_side: int = READABLE_SIDE) -> int:
    """The whole factor that shows a ``side``-pixel image with at least ``min_side`` pixels (1 for large ones)."""
    return max(1, -(-min_side // max(1, side)))  # ceil


def enlarged(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., H, W) upscaled ``factor`` times with nearest neighbours: every code stays a sharp block."""
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def labelled_grid(rows: dict, column_titles=(), min_side: int = READABLE_SIDE, padding: int = 2) -> Image.Image:
    """One picture of named image rows: each row (N, C, H, W) in [-1, 1] is laid out left to right
    under its name, images upscaled (nearest neighbour) to at least ``min_side`` pixels so small
    codes stay visible; ``column_titles`` label the columns above the first row."""
    rows = {name: images.detach().float().cpu() for name, images in rows.items() if len(images)}
    if not rows:
        raise ValueError("labelled_grid needs at least one non-empty row")
    height = max(images.shape[-2] for images in rows.values())
    factor = enlarge_factor(height, min_side)
    font = ImageFont.load_default(size=max(11, min(18, factor * height // 6)))
    label = 18 + int(font.size)  # a line of text above each row
    tiles = {name: [Image.fromarray(to_uint8(image)).convert("RGB") for image in enlarged(images, factor)]
             for name, images in rows.items()}
    width = max(sum(t.width + padding for t in row) + padding for row in tiles.values())
    top = label if column_titles else 0
    canvas = Image.new("RGB", (width, top + sum(label + max(t.height for t in row) + padding for row in tiles.values())),
                       "white")
    draw = ImageDraw.Draw(canvas)
    first = next(iter(tiles.values()))
    for title, x in zip(column_titles, np.cumsum([padding] + [t.width + padding for t in first])):
        draw.text((int(x), 4), str(title), fill="black", font=font)
    y = top
    for name, row in tiles.items():
        draw.text((padding, y + 4), name, fill="black", font=font)
        y, x = y + label, padding
        for tile in row:
            canvas.paste(tile, (x, y))
            x += tile.width + padding
        y += max(t.height for t in row) + padding
    return canvas


def save_labelled_grid(rows: dict, path: str | Path, column_titles=(), min_side: int = READABLE_SIDE) -> Path:
    """Write :func:`labelled_grid` as PNG, atomically."""
    path = Path(path)
    picture = labelled_grid(rows, column_titles, min_side)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path
