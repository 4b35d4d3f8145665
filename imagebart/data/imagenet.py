"""Class-conditional ImageNet in taming-transformers' prepared layout, without its downloader.

    <root>/filelist.txt          one ``<synset>/<file>.JPEG`` per line (built from data/ if absent)
    <root>/data/<synset>/*.JPEG  the images, one folder per WordNet synset (n01440764, ...)
    <root>/synset_human.txt      optional: ``<synset> <human readable label>`` per line

``root`` defaults to ``$XDG_CACHE_HOME/autoencoders/data/ILSVRC2012_{train,validation}``
(``~/.cache`` when ``XDG_CACHE_HOME`` is unset), exactly where taming prepares it, so an existing
taming copy is found as it is. ``class_label`` is the index of the image's synset among the sorted
synsets of the list (0..999 for the full dataset), as in taming.

Preprocessing follows taming: a square window (random for training, centre for validation;
``random_crop`` overrides) resized to ``config["size"]``, no flip. The original configs pass
``config: {size: 256}``; config targets ``taming.data.imagenet.ImageNet{Train,Validation}`` resolve
here (see ``imagebart.util.LEGACY_TARGETS``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imagebart.data.base import DataNotFoundError, ImagePaths, read_file_list
from imagebart.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

# taming leaves this file out of its lists; so do we, to keep the same indices
IGNORED_FILES = {"n06596364_9591.JPEG"}


def default_root(name: str) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return Path(cache) / "autoencoders" / "data" / name


def scan_synset_folders(datadir: Path) -> list[str]:
    """``<synset>/<file>`` for every image one level below ``datadir``, sorted."""
    relpaths = []
    for synset_dir in sorted(p for p in datadir.iterdir() if p.is_dir()):
        relpaths.extend(
            f"{synset_dir.name}/{f.name}"
            for f in sorted(synset_dir.iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        )
    return relpaths


def read_human_labels(path: Path, synsets: list[str]) -> list[str]:
    """The label of each synset, from a synset table (``<synset> <label>`` lines, taming's
    synset_human.txt) or an index table (YAML ``index: label`` over the sorted synsets, the
    original's data/imagenet_ids2labels.yaml)."""
    if not path.is_file():
        raise DataNotFoundError(f"ImageNet labels_file not found: {path}")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        with open(path, "r", encoding="utf-8") as f:
            table = {int(k): str(v) for k, v in yaml.safe_load(f).items()}
        keys = range(len(synsets))
    else:
        table = {}
        with open(path, "r", encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(maxsplit=1)
                if len(parts) == 2:
                    table[parts[0]] = parts[1]
        keys = synsets
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(f"labels_file {path} has no entry for {missing[0]!r}")
    return [table[k] for k in keys]


class ImageNetBase(ImagePaths):
    """Shared loader; subclasses fix the folder name, the crop default and the help text."""

    NAME: str  # folder under $XDG_CACHE_HOME/autoencoders/data
    NAME_IN_CONFIG: str  # taming's nested config key, e.g. config["ImageNetTrain"]["random_crop"]
    RANDOM_CROP: bool
    EXPECTED: str

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        root: str | os.PathLike | None = None,
        labels_file: str | os.PathLike | None = None,
    ):
        config = self._parse_config(config)
        self.root = Path(root) if root is not None else default_root(self.NAME)
        self.datadir = self.root / "data"
        self.txt_filelist = self.root / "filelist.txt"

        relpaths = self._load_relpaths()
        relpaths = [p for p in relpaths if p.split("/")[-1] not in IGNORED_FILES]
        synsets = [p.split("/")[0] for p in relpaths]
        self.class_names = sorted(set(synsets))  # synset ids; index = class_label
        index = {s: i for i, s in enumerate(self.class_names)}
        class_labels = np.array([index[s] for s in synsets], dtype=np.int64)
        del synsets

        first = self.datadir / relpaths[0]
        if not first.is_file():
            raise DataNotFoundError(
                f"ImageNet image {first} (first entry of {self.txt_filelist}) not found. "
                f"{self._how_to()}"
            )

        # human-readable label per class (not per image: 1000 strings, not 1.3M)
        self.human_labels: list[str] | None = None
        if labels_file is None and (self.root / "synset_human.txt").is_file():
            labels_file = self.root / "synset_human.txt"  # taming downloads it here
        if labels_file is not None:
            self.human_labels = read_human_labels(Path(labels_file), self.class_names)

        super().__init__(
            relpaths,
            size=config["size"],
            labels={"class_label": class_labels},
            flip_p=0.0,
            random_crop=config["random_crop"],
            root=self.datadir,
            relpath_key="relpath",
            name=f"ImageNet file list {self.txt_filelist}",
        )

    def __getitem__(self, i: int) -> dict:
        example = super().__getitem__(i)
        example["synsets"] = self.class_names[example["class_label"]]
        if self.human_labels is not None:
            example["human_label"] = self.human_labels[example["class_label"]]
        return example

    def _parse_config(self, config) -> dict:
        """The keys taming read: ``size`` and ``<ClassName>/random_crop`` (or ``random_crop``)."""
        if config is None:
            config = {}
        if hasattr(config, "_metadata"):  # an OmegaConf DictConfig
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(config, resolve=True)
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping like {{'size': 256}}, got {config!r}")
        config = dict(config)
        random_crop = self.RANDOM_CROP
        nested = config.pop(self.NAME_IN_CONFIG, None)
        if nested is not None:
            if not isinstance(nested, Mapping) or set(nested) - {"random_crop"}:
                raise ValueError(
                    f"config[{self.NAME_IN_CONFIG!r}] may only hold 'random_crop', got {nested!r}"
                )
            random_crop = nested.get("random_crop", random_crop)
        random_crop = config.pop("random_crop", random_crop)
        size = config.pop("size", None)
        if config:
            raise ValueError(
                f"unknown ImageNet config keys {sorted(config)}; supported: 'size', "
                f"'random_crop', '{self.NAME_IN_CONFIG}: {{random_crop: ...}}' "
                "(taming's 'sub_indices' is not supported)"
            )
        # taming's size 0 meant "no resizing"; we still crop to a square so images can be batched
        return {"size": size or None, "random_crop": bool(random_crop)}

    def _load_relpaths(self) -> list[str]:
        if self.txt_filelist.is_file():
            return read_file_list(self.txt_filelist, what="ImageNet file list")
        if not self.datadir.is_dir():
            raise DataNotFoundError(
                f"ImageNet data not found: neither {self.txt_filelist} nor {self.datadir} exists. "
                f"{self._how_to()}"
            )
        logger.info("%s missing; scanning %s", self.txt_filelist, self.datadir)
        relpaths = scan_synset_folders(self.datadir)
        if not relpaths:
            raise ValueError(
                f"ImageNet image folder {self.datadir} is empty: expected <synset>/<file>.JPEG "
                f"below it. {self._how_to()}"
            )
        try:
            self.txt_filelist.write_text("\n".join(relpaths) + "\n", encoding="utf-8")
        except OSError as err:
            logger.warning("cannot write %s (%s); using the scanned list", self.txt_filelist, err)
        return relpaths

    def _how_to(self) -> str:
        return (
            f"Put {self.EXPECTED} in {self.datadir}/<synset>/ (e.g. "
            f"{self.datadir}/n01440764/n01440764_10026.JPEG) and optionally a list of them, one "
            f"'<synset>/<file>' per line, in {self.txt_filelist}; this is the layout "
            "taming-transformers prepares. Pass root=... or set XDG_CACHE_HOME to use another "
            "place (default: $XDG_CACHE_HOME/autoencoders/data/, ~/.cache when unset). "
            "Nothing is downloaded automatically."
        )


class ImageNetTrain(ImageNetBase):
    """ILSVRC2012 training images (random square crop by default, as in taming)."""

    NAME = "ILSVRC2012_train"
    NAME_IN_CONFIG = "ImageNetTrain"
    RANDOM_CROP = True
    EXPECTED = (
        "the 1,281,167 ILSVRC2012 training JPEGs (ILSVRC2012_img_train.tar, sub-tars extracted)"
    )


class ImageNetValidation(ImageNetBase):
    """ILSVRC2012 validation images, sorted into synset folders (centre crop by default)."""

    NAME = "ILSVRC2012_validation"
    NAME_IN_CONFIG = "ImageNetValidation"
    RANDOM_CROP = False
    EXPECTED = (
        "the 50,000 ILSVRC2012 validation JPEGs (ILSVRC2012_img_val.tar), moved into one folder "
        "per synset (taming does this with its validation_synset.txt)"
    )
