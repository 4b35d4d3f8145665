"""FFHQ in taming-transformers' on-disk layout (the layout the original configs expect).

    data/ffhqtrain.txt        one image name per line, e.g. ``52535.png`` (60,000 lines)
    data/ffhqvalidation.txt   the validation names (10,000 lines)
    data/ffhq/52535.png       the 1024x1024 FFHQ PNGs, flat (a symlink to them is fine)

Paths are relative to the working directory, as in the original. Like taming, images are centre
cropped (a no-op for FFHQ's square images) and resized to ``size``; taming does not flip FFHQ, so
``flip_p`` defaults to 0. Config targets ``taming.data.faceshq.FFHQTrain/FFHQValidation`` resolve
here (see ``imagebart.util.LEGACY_TARGETS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from imagebart.data.base import DataNotFoundError, ImagePaths, read_file_list

HOW_TO_GET_FFHQ = (
    "FFHQ needs (relative to the working directory unless you pass absolute paths): "
    "the split lists data/ffhqtrain.txt and data/ffhqvalidation.txt (one name like '52535.png' "
    "per line; the original lists ship with CompVis/taming-transformers and CompVis/imagebart "
    "under data/), and the 1024x1024 FFHQ PNGs named 00000.png ... 69999.png directly in "
    "data/ffhq (from NVlabs/ffhq-dataset, images1024x1024, flattened; a symlink is fine). "
    "Nothing is downloaded automatically."
)


class FFHQBase(ImagePaths):
    """Images ``root/<name>`` for every name in ``file_list``."""

    def __init__(
        self,
        size: int | None = 256,
        root: str | os.PathLike = "data/ffhq",
        file_list: str | os.PathLike = "data/ffhqtrain.txt",
        flip_p: float = 0.0,
        interpolation: str = "bicubic",
        keys: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        self.file_list = Path(file_list)
        try:
            relpaths = read_file_list(self.file_list, what="FFHQ file list")
        except DataNotFoundError as err:
            raise DataNotFoundError(f"{err}. {HOW_TO_GET_FFHQ}") from None
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"FFHQ image folder not found: {self.root} (resolved: {self.root.resolve()}). "
                f"{HOW_TO_GET_FFHQ}"
            )
        first = self.root / relpaths[0]
        if not first.is_file():
            raise DataNotFoundError(
                f"FFHQ image {first} (first entry of {self.file_list}) not found. {HOW_TO_GET_FFHQ}"
            )
        # taming's `keys` kept only some entries of each example; we keep that option
        self.keys = list(keys) if keys is not None else None
        known = {"image", "file_path_", "relative_file_path_"}
        if self.keys is not None and not set(self.keys) <= known:
            raise ValueError(f"keys must be a subset of {sorted(known)}, got {keys!r}")
        super().__init__(
            relpaths,
            size=size,
            flip_p=flip_p,
            interpolation=interpolation,
            root=self.root,
            name=f"FFHQ file list {self.file_list}",
        )

    def __getitem__(self, i: int) -> dict:
        example = super().__getitem__(i)
        if self.keys is not None:
            example = {k: example[k] for k in self.keys}
        return example


class FFHQTrain(FFHQBase):
    def __init__(self, size=256, root="data/ffhq", file_list="data/ffhqtrain.txt", **kwargs):
        super().__init__(size=size, root=root, file_list=file_list, **kwargs)


class FFHQValidation(FFHQBase):
    def __init__(self, size=256, root="data/ffhq", file_list="data/ffhqvalidation.txt", **kwargs):
        super().__init__(size=size, root=root, file_list=file_list, **kwargs)
