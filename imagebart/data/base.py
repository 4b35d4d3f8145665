"""Image loading and preprocessing shared by every file-backed dataset.

Every dataset in :mod:`imagebart.data` yields dicts whose ``image`` is a float32 array of shape
(size, size, 3) in [-1, 1] (HWC, as the original's datasets and the first-stage VQGAN expect).

Preprocessing is the same everywhere: take a square window (the centre one, or a random one for
ImageNet training as taming did), resize it to ``size`` with PIL (bicubic by default, with PIL's
antialiasing when shrinking), optionally mirror it left-right with probability ``flip_p``.
Randomness (random crop, flip) comes from torch's global generator, so ``torch.manual_seed`` and
the per-worker seeding of ``DataLoader`` / Lightning's ``seed_everything`` make it reproducible.

Note: taming-transformers resized with OpenCV (bilinear, no antialiasing) before cropping; the
original's LSUN datasets cropped and then resized with PIL bicubic as we do. The pixels therefore
differ slightly from taming's FFHQ/ImageNet pipeline; the geometry (which window) is the same.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from imagebart.util import is_integer

INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "linear": Image.BILINEAR,  # the original's LSUN table maps "linear" to bilinear too
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
}


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where it expects them; the message says what to put where."""


# reading files


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit PNG / TIFF greys open as one of these


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB with the same look.

    PIL's own ``convert("RGB")`` clips 16-bit grey (``I;16``, ``I``) at 255, which turns nearly
    every pixel white; those are scaled from 0..65535 to 0..255 instead. Float images (``F``) are
    read as 0..1 when they lie in [0, 1], else as 0..255. Alpha is dropped, as ``convert`` does.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(image, dtype=np.float64) / 257.0  # 65535 -> 255
        image = Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        array = array * 255.0 if array.size and 0.0 <= array.min() and array.max() <= 1.0 else array
        image = Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8), "L")
    return image if image.mode == "RGB" else image.convert("RGB")


def open_image(path: str | os.PathLike, what: str = "image file") -> Image.Image:
    """Open and decode ``path`` (any mode), or raise ``ValueError`` naming it.

    Refuses decompression bombs (more pixels than ``Image.MAX_IMAGE_PIXELS``: a small file that
    would decode to gigabytes), which PIL only warns about below twice that limit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now so a truncated file fails here, naming the path
                return image.copy()  # independent of the file, which closes here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{what} {path} is too large to decode ({err}); expected at most "
                         f"{Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` as an 8-bit RGB PIL image (16-bit greys scaled); a missing or unreadable file names the path."""
    return to_rgb(open_image(path))


def read_file_list(path: str | os.PathLike, what: str = "file list") -> list[str]:
    """Non-empty, stripped lines of a text file (one relative path per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{what} not found: {path} (resolved: {path.resolve()})")
    with open(path, "r", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"{what} {path} is empty; expected one image path per line")
    return lines


# preprocessing


def check_size(size) -> int | None:
    """``size`` must be None (keep the square crop's own size) or a positive int."""
    if size is None:
        return None
    if not is_integer(size) or size <= 0:
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    return int(size)


def check_flip_p(flip_p) -> float:
    if not isinstance(flip_p, (int, float)) or not 0.0 <= float(flip_p) <= 1.0:
        raise ValueError(f"flip_p must be a probability in [0, 1], got {flip_p!r}")
    return float(flip_p)


def check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}"
        )
    return interpolation


def square_crop(image: Image.Image, random_crop: bool = False) -> Image.Image:
    """The largest square window: centred, or at a uniformly random offset along the long side."""
    w, h = image.size
    side = min(w, h)
    if random_crop:
        left = int(torch.randint(0, w - side + 1, ()).item())
        top = int(torch.randint(0, h - side + 1, ()).item())
    else:
        left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def resize_square(
    image: Image.Image, size: int | None, interpolation: str = "bicubic"
) -> Image.Image:
    if size is None or image.size == (size, size):
        return image
    return image.resize((size, size), resample=INTERPOLATIONS[interpolation])


def random_flip(image: Image.Image, flip_p: float) -> Image.Image:
    """Mirror left-right with probability ``flip_p`` (torch's global generator decides)."""
    if flip_p > 0.0 and torch.rand(()).item() < flip_p:
        return image.transpose(Image.FLIP_LEFT_RIGHT)
    return image


def to_array(image: Image.Image) -> np.ndarray:
    """uint8 RGB image -> float32 HWC in [-1, 1]."""
    return (np.asarray(image, dtype=np.uint8) / 127.5 - 1.0).astype(np.float32)


def preprocess_image(
    image: Image.Image,
    size: int | None,
    flip_p: float = 0.0,
    interpolation: str = "bicubic",
    random_crop: bool = False,
) -> np.ndarray:
    """Square crop, resize to ``size``, random flip, float32 HWC in [-1, 1]."""
    image = square_crop(image, random_crop=random_crop)
    image = resize_square(image, size, interpolation)
    image = random_flip(image, flip_p)
    return to_array(image)


# datasets


class ImagePaths(Dataset):
    """Images at ``paths`` (relative to ``root`` when given) with optional per-image labels.

    Each item holds ``image``, ``file_path_``, the path as listed under ``relpath_key`` when
    ``root`` is given, and every label key (taming's ``ImagePaths`` layout), so code written
    against the original's datasets finds the same keys. Paths and labels are kept in numpy
    arrays, not lists of Python objects, so forked loader workers share them instead of slowly
    copying them (a list of 1.3M strings for ImageNet would be copied once per worker).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        size: int | None = 256,
        labels: Mapping[str, Sequence] | None = None,
        flip_p: float = 0.0,
        interpolation: str = "bicubic",
        random_crop: bool = False,
        root: str | os.PathLike | None = None,
        relpath_key: str = "relative_file_path_",
        name: str = "image list",
    ):
        super().__init__()
        if len(paths) == 0:
            raise ValueError(f"{name} is empty: no image paths to read")
        self._paths = np.array([os.fsencode(p) for p in paths])  # (N,) bytes
        self.root = None if root is None else os.fspath(root)
        self.relpath_key = relpath_key
        self.size = check_size(size)
        self.flip_p = check_flip_p(flip_p)
        self.interpolation = check_interpolation(interpolation)
        self.random_crop = bool(random_crop)
        self.labels = {k: np.asarray(v) for k, v in (labels or {}).items()}
        for key, values in self.labels.items():
            if len(values) != len(self):
                raise ValueError(
                    f"labels[{key!r}] has {len(values)} entries but there are "
                    f"{len(self)} image paths"
                )

    def __len__(self) -> int:
        return len(self._paths)

    def listed_path(self, i: int) -> str:
        """Path ``i`` as given (relative to ``root`` when there is one)."""
        return os.fsdecode(self._paths[i])

    def file_path(self, i: int) -> str:
        path = self.listed_path(i)
        return path if self.root is None else os.path.join(self.root, path)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of length {len(self)}")
        path = self.file_path(i)
        image = preprocess_image(
            load_image(path), self.size, self.flip_p, self.interpolation, self.random_crop
        )
        example = {"image": image, "file_path_": path}
        if self.root is not None:
            example[self.relpath_key] = self.listed_path(i)
        for key, values in self.labels.items():
            example[key] = values[i].item()  # numpy scalar -> int / str
        return example
