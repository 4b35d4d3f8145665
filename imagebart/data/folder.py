"""Datasets over your own images: a folder tree, or a text file listing paths.

These are the quickest way to train on new data: point ``root`` at a folder (optionally with one
sub-folder per class) and every image is centre-cropped and resized to ``size`` (see
:mod:`imagebart.data.base`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from imagebart.data.base import DataNotFoundError, ImagePaths, read_file_list
from imagebart.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)


def scan_images(root: Path, extensions: Sequence[str]) -> list[Path]:
    """All files below ``root`` with one of ``extensions`` (case-insensitive), sorted."""
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in suffixes)
    return sorted(found)


class ImageFolder(ImagePaths):
    """Every image below ``root`` (recursive, sorted so the order is the same on every machine).

    With ``labels_from_subfolders`` the first-level sub-folder is the class: ``class_label`` is
    its index in the sorted sub-folder names (``class_names``); sub-folders without images are
    skipped, and images lying directly in ``root`` are an error.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | None = 256,
        flip_p: float = 0.0,
        labels_from_subfolders: bool = False,
        extensions: Sequence[str] = IMAGE_SUFFIXES,
        interpolation: str = "bicubic",
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"image folder not found: {self.root} (resolved: {self.root.resolve()})"
            )
        if isinstance(extensions, str):
            extensions = (extensions,)
        paths = scan_images(self.root, extensions)
        if not paths:
            raise ValueError(
                f"image folder {self.root} is empty: no files with extensions "
                f"{tuple(extensions)} below it"
            )
        labels = None
        self.class_names: list[str] | None = None
        if labels_from_subfolders:
            stray = [p for p in paths if p.parent == self.root]
            if stray:
                raise ValueError(
                    f"labels_from_subfolders=True but {len(stray)} image(s) lie directly in "
                    f"{self.root} (e.g. {stray[0]}); put every image in a class sub-folder"
                )
            subfolders = [p.relative_to(self.root).parts[0] for p in paths]
            self.class_names = sorted(set(subfolders))
            index = {name: i for i, name in enumerate(self.class_names)}
            labels = {
                "class_label": [index[s] for s in subfolders],
                "human_label": subfolders,
            }
            logger.info("%s: %d images in %d classes", self.root, len(paths), len(self.class_names))
        super().__init__(
            paths,
            size=size,
            labels=labels,
            flip_p=flip_p,
            interpolation=interpolation,
            name=f"image folder {self.root}",
        )


class ImageFileList(ImagePaths):
    """Images named in a text file, one path per line, relative to ``root``.

    ``root`` defaults to the folder that holds ``file_list``. Absolute lines are used as they are.
    """

    def __init__(
        self,
        file_list: str | os.PathLike,
        root: str | os.PathLike | None = None,
        size: int | None = 256,
        flip_p: float = 0.0,
        interpolation: str = "bicubic",
    ):
        self.file_list = Path(file_list)
        relpaths = read_file_list(self.file_list, what="image file list")
        self.root = Path(root) if root is not None else self.file_list.parent
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"image root folder not found: {self.root} (resolved: {self.root.resolve()}); "
                f"the paths in {self.file_list} are read relative to it"
            )
        super().__init__(
            relpaths,
            size=size,
            flip_p=flip_p,
            interpolation=interpolation,
            root=self.root,
            name=f"image file list {self.file_list}",
        )
