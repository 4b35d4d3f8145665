"""The image sets an evaluation compares, read in batches of (B, 3, H, W) floats in [-1, 1].

A set is named by one string:

- a folder of images (a ``scripts/sample.py`` output folder is read from its ``samples/``);
- an ``.npz`` in the ADM evaluation-suite layout (uint8 NHWC images under ``arr_0``);
- ``demo:train`` / ``demo:validation``: the built-in demo scenes;
- a training config (``.yaml``): the ``data.params.validation`` dataset it describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from imagebart.config import load_config
from imagebart.data.base import load_image, to_array
from imagebart.data.demo import SPLITS, DemoScenes
from imagebart.images import IMAGE_SUFFIXES
from imagebart.util import instantiate_from_config

SET_FORMS = "a folder of images, an .npz with uint8 images under arr_0, demo:train / demo:validation, or a " \
            "training config .yaml (its validation data)"


def _image_files(folder: Path) -> list[Path]:
    if (folder / "samples").is_dir() and (folder / "settings.json").is_file():
        folder = folder / "samples"  # a scripts/sample.py output folder: not its grid.png
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _npz_images(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "arr_0" not in data:
                raise ValueError(f"{path} has no arr_0 (uint8 images, N x H x W x 3), keys {sorted(data)}")
            images = data["arr_0"]
    except OSError as err:
        raise ValueError(f"cannot read {path} as .npz: {err}") from err
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: arr_0 must be uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


def _dataset(spec: str):
    if spec.startswith("demo:"):
        split = spec.split(":", 1)[1]
        if split not in SPLITS:
            raise ValueError(f"{spec!r}: the demo data has the splits {sorted(SPLITS)}")
        return DemoScenes(split=split)
    config = load_config(spec)
    try:
        return instantiate_from_config(config.data.params.validation)
    except Exception as err:  # noqa: BLE001 - a missing key or a bad dataset: name the config
        raise ValueError(f"{spec}: cannot build its data.params.validation dataset ({err})") from err


def set_labels(spec: str, n: Optional[int] = None) -> Optional[np.ndarray]:
    """The class labels of a generated set, where it records them: ``arr_1`` of an ADM-style .npz, or
    ``class_label`` in the tokens.npz of a scripts/sample.py folder; None otherwise."""
    path = Path(spec)
    source, key = (path / "tokens.npz", "class_label") if path.is_dir() else (path, "arr_1")
    if source.suffix != ".npz" or not source.is_file():
        return None
    try:
        with np.load(source, allow_pickle=False) as data:
            labels = data[key] if key in data else None
    except (OSError, ValueError):
        return None
    return None if labels is None else labels[:n].astype(np.int64)


def dataset_labels(spec: str, n: int) -> Optional[np.ndarray]:
    """``class_label`` of the first n items of a dataset set (demo split or config), else None."""
    if not (spec.startswith("demo:") or Path(spec).suffix in (".yaml", ".yml")):
        return None
    dataset = _dataset(spec)
    first = dataset[0]
    if "class_label" not in first:
        return None
    return np.array([int(dataset[i]["class_label"]) for i in range(min(n, len(dataset)))], dtype=np.int64)


def count_images(spec: str) -> int:
    """How many images the set holds."""
    path = Path(spec)
    if path.is_dir():
        return len(_image_files(path))
    if path.suffix == ".npz" and path.is_file():
        return len(_npz_images(path))
    return len(_dataset(spec))


def image_batches(spec: str, n: Optional[int] = None, batch_size: int = 100) -> Iterator[torch.Tensor]:
    """The first ``n`` images (all when None) of the set, in batches; one image size throughout."""
    path = Path(spec)
    if path.is_dir():
        files = _image_files(path)[:n]
        read = lambda i: to_array(load_image(files[i]))  # noqa: E731 - (H, W, 3) in [-1, 1]
        total = len(files)
    elif path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        images = _npz_images(path)[:n]
        read = lambda i: images[i].astype(np.float32) / 127.5 - 1.0  # noqa: E731
        total = len(images)
    elif spec.startswith("demo:") or path.suffix in (".yaml", ".yml"):
        dataset = _dataset(spec)
        total = len(dataset) if n is None else min(n, len(dataset))
        read = lambda i: np.asarray(dataset[i]["image"], dtype=np.float32)  # noqa: E731
    else:
        raise ValueError(f"{spec!r} is not an image set: expected {SET_FORMS}")
    shape = None
    for start in range(0, total, batch_size):
        batch = np.stack([read(i) for i in range(start, min(total, start + batch_size))])  # (B, H, W, 3)
        if shape is None:
            shape = batch.shape[1:]
        if batch.shape[1:] != shape:
            raise ValueError(f"{spec}: images of different sizes ({shape[:2]} and {batch.shape[1:3]}); evaluate "
                             "sets of one size")
        yield torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def extract(network, spec: str, n: Optional[int] = None, batch_size: int = 100,
            device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), classifier logits (N, C)) of a set; ``network`` returns both by name."""
    device = device or torch.device("cpu")
    features, logits = [], []
    for images in image_batches(spec, n, batch_size):
        out = network(images.to(device))
        features.append(out["features"].double().cpu())
        logits.append(out["logits"].double().cpu())
    if not features:
        raise ValueError(f"{spec} holds no images")
    return torch.cat(features), torch.cat(logits)
