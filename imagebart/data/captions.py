"""Image + caption pairs from a file list, for text-conditional chains on your own data.

Two layouts, chosen by the file's suffix:

- ``.tsv`` (Conceptual Captions style): one ``path<TAB>caption`` per line;
- ``.jsonl``: one ``{"image": path, "caption": text}`` object per line.

Paths are relative to ``root`` (default: the folder holding the list) unless absolute. Images go
through the same centre crop, resize and optional flip as :class:`~imagebart.data.folder.ImageFolder`;
items hold ``image``, ``caption`` and the original's path keys. Every listed file is checked when
the dataset is built, so a missing image is named (with its line) before training starts, not
hours into it; ``skip_missing`` drops such lines with a warning instead (web-scraped lists always
lose a few images).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from imagebart.data.base import DataNotFoundError, ImagePaths

logger = logging.getLogger(__name__)

LAYOUTS = (".tsv", ".jsonl")


def read_caption_list(path: Path) -> list:
    """(line number, image path, caption) for every non-empty line of a .tsv or .jsonl list."""
    if path.suffix not in LAYOUTS:
        raise ValueError(f"caption list {path}: expected a .tsv (path<TAB>caption) or .jsonl "
                         f'({{"image": ..., "caption": ...}}) file, got suffix {path.suffix!r}')
    if not path.is_file():
        raise DataNotFoundError(f"caption list not found: {path} (resolved: {path.resolve()})")
    pairs = []
    with open(path, "r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            pairs.append((number, *_parse_line(line.rstrip("\n"), path, number)))
    if not pairs:
        raise ValueError(f"caption list {path} is empty")
    return pairs


def _parse_line(line: str, path: Path, number: int) -> tuple:
    where = f"{path}, line {number}"
    if path.suffix == ".tsv":
        image, tab, caption = line.partition("\t")
        if not tab:
            raise ValueError(f"{where}: expected 'path<TAB>caption', found no tab in {line[:80]!r}")
    else:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not a JSON object ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("image"), str) \
                or not isinstance(record.get("caption"), str):
            raise ValueError(f'{where}: expected {{"image": "<path>", "caption": "<text>"}}, got {line[:80]!r}')
        image, caption = record["image"], record["caption"]
    image, caption = image.strip(), " ".join(caption.split())
    if not image or not caption:
        raise ValueError(f"{where}: empty {'image path' if not image else 'caption'}")
    return image, caption


class CaptionedImages(ImagePaths):
    """Images and their captions from a ``.tsv`` or ``.jsonl`` list (see the module docstring)."""

    def __init__(self, file_list: str | os.PathLike, root: str | os.PathLike | None = None,
                 size: int | None = 256, flip_p: float = 0.0, interpolation: str = "bicubic",
                 skip_missing: bool = False):
        self.file_list = Path(file_list)
        pairs = read_caption_list(self.file_list)
        self.root = Path(root) if root is not None else self.file_list.parent
        if not self.root.is_dir():
            raise DataNotFoundError(f"image root folder not found: {self.root} (resolved: {self.root.resolve()}); "
                                    f"the paths in {self.file_list} are read relative to it")
        missing = [(n, p) for n, p, _ in pairs if not (self.root / p).is_file()]
        if missing and not skip_missing:
            shown = "; ".join(f"line {n}: {self.root / p}" for n, p in missing[:3])
            raise DataNotFoundError(f"{len(missing)} of the {len(pairs)} images in {self.file_list} are missing "
                                    f"({shown}{' ...' if len(missing) > 3 else ''}); fix the list or the root, or "
                                    "pass skip_missing: true to drop them")
        if missing:
            logger.warning("%s: dropping %d of %d lines whose images are missing", self.file_list, len(missing),
                           len(pairs))
            gone = {n for n, _ in missing}
            pairs = [pair for pair in pairs if pair[0] not in gone]
            if not pairs:
                raise DataNotFoundError(f"none of the images in {self.file_list} exist below {self.root}")
        super().__init__([p for _, p, _ in pairs], size=size, labels={"caption": [c for _, _, c in pairs]},
                         flip_p=flip_p, interpolation=interpolation, root=self.root,
                         name=f"caption list {self.file_list}")

    @property
    def captions(self) -> list:
        """Every caption, in list order (what a tokenizer is trained on)."""
        return [str(c) for c in self.labels["caption"]]
