"""LSUN churches / bedrooms / cats with the original release's split lists.

    data/lsun/church_outdoor_{train,val}.txt   data/lsun/churches/<relative path>
    data/lsun/bedrooms_{train,val}.txt         data/lsun/bedrooms/<relative path>
    data/lsun/cat_{train,val}.txt              data/lsun/cats/<relative path>

Paths are relative to the working directory, as in the original (``data_root`` / ``txt_file``
override them). As there: centre crop to a square, resize to ``size`` with PIL (bicubic by
default; ``size=None`` keeps the crop's size), random horizontal flip with ``flip_p`` = 0.5 for
training and 0 for validation.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagebart.data.base import DataNotFoundError, ImagePaths, read_file_list

HOW_TO_GET_LSUN = (
    "The LSUN images come from https://github.com/fyu/lsun (export them to image files); the "
    "original release's train/validation split lists are in https://ommer-lab.com/files/lsun.zip, "
    "to be extracted to data/lsun/, with the churches/bedrooms/cats images placed or symlinked "
    "at data/lsun/churches, data/lsun/bedrooms and data/lsun/cats. Nothing is downloaded "
    "automatically."
)


class LSUNBase(ImagePaths):
    """Images ``data_root/<line>`` for every line of ``txt_file``."""

    def __init__(
        self,
        txt_file: str | os.PathLike,
        data_root: str | os.PathLike,
        size: int | None = None,
        interpolation: str = "bicubic",
        flip_p: float = 0.5,
    ):
        self.txt_file = Path(txt_file)
        self.data_root = Path(data_root)
        try:
            relpaths = read_file_list(self.txt_file, what="LSUN split list")
        except DataNotFoundError as err:
            raise DataNotFoundError(f"{err}. {HOW_TO_GET_LSUN}") from None
        if not self.data_root.is_dir():
            raise DataNotFoundError(
                f"LSUN image folder not found: {self.data_root} "
                f"(resolved: {self.data_root.resolve()}). {HOW_TO_GET_LSUN}"
            )
        first = self.data_root / relpaths[0]
        if not first.is_file():
            raise DataNotFoundError(
                f"LSUN image {first} (first entry of {self.txt_file}) not found. {HOW_TO_GET_LSUN}"
            )
        super().__init__(
            relpaths,
            size=size,
            flip_p=flip_p,
            interpolation=interpolation,
            root=self.data_root,
            name=f"LSUN split list {self.txt_file}",
        )


class LSUNSplit(LSUNBase):
    """One split: the original's fixed list, root and flip probability, overridable by keyword."""

    TXT_FILE: str
    DATA_ROOT: str
    FLIP_P: float

    def __init__(self, size=None, interpolation="bicubic", flip_p=None, txt_file=None,
                 data_root=None):
        super().__init__(
            txt_file=txt_file if txt_file is not None else self.TXT_FILE,
            data_root=data_root if data_root is not None else self.DATA_ROOT,
            size=size,
            interpolation=interpolation,
            flip_p=flip_p if flip_p is not None else self.FLIP_P,
        )


class LSUNChurchesTrain(LSUNSplit):
    TXT_FILE, DATA_ROOT, FLIP_P = "data/lsun/church_outdoor_train.txt", "data/lsun/churches", 0.5


class LSUNChurchesValidation(LSUNSplit):
    TXT_FILE, DATA_ROOT, FLIP_P = "data/lsun/church_outdoor_val.txt", "data/lsun/churches", 0.0


class LSUNBedroomsTrain(LSUNSplit):
    TXT_FILE, DATA_ROOT, FLIP_P = "data/lsun/bedrooms_train.txt", "data/lsun/bedrooms", 0.5


class LSUNBedroomsValidation(LSUNSplit):
    TXT_FILE, DATA_ROOT, FLIP_P = "data/lsun/bedrooms_val.txt", "data/lsun/bedrooms", 0.0


class LSUNCatsTrain(LSUNSplit):
    TXT_FILE, DATA_ROOT, FLIP_P = "data/lsun/cat_train.txt", "data/lsun/cats", 0.5


class LSUNCatsValidation(LSUNSplit):
    TXT_FILE, DATA_ROOT, FLIP_P = "data/lsun/cat_val.txt", "data/lsun/cats", 0.0
