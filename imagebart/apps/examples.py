"""Dataset examples for the inpainting app: the validation set of scale 1's training config.

The demo chain's config names the procedurally drawn ``DemoScenes``, which needs no files; the
released configs name FFHQ / ImageNet / LSUN, which load only where their files are. When the
dataset cannot be built, the app offers uploads only and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from imagebart.sampling.config import load_sampling_config
from imagebart.util import instantiate_from_config, is_integer

logger = logging.getLogger(__name__)


@dataclass
class Examples:
    """The validation dataset (or None) and, when there is none, why."""

    dataset: Optional[Any]
    source: str  # what was tried, for the page
    reason: Optional[str] = None

    def __len__(self) -> int:
        return 0 if self.dataset is None else len(self.dataset)


def validation_examples(sampling_config) -> Examples:
    """Build ``data.params.validation`` of the first scale's config (the data module is not needed)."""
    try:
        paths = load_sampling_config(sampling_config)
        config = paths.load_scale_config(0)
        source = str(paths.configs[0])
    except Exception as err:  # reported in the page; the chain loader reports the same problem
        return Examples(None, str(sampling_config), f"cannot read the sampling config: {err}")
    validation = config.get("data", {}).get("params", {}).get("validation") if "data" in config else None
    if validation is None or "target" not in validation:
        return Examples(None, source, "its config has no data.params.validation section")
    try:
        dataset = instantiate_from_config(validation)
        if len(dataset) < 1:
            return Examples(None, source, "its validation dataset is empty")
    except Exception as err:  # any dataset may fail in its own way (missing files above all)
        logger.info("validation dataset of %s not available: %s", source, err)
        return Examples(None, source, f"its validation dataset ({validation['target']}) did not load: {err}")
    return Examples(dataset, source)


def example_image(examples: Examples, index: int, size: int) -> torch.Tensor:
    """Item ``index`` as (1, 3, size, size) in [-1, 1] (resized when the dataset's size differs)."""
    if examples.dataset is None:
        raise ValueError(f"no dataset examples: {examples.reason}")
    if not is_integer(index) or not 0 <= index < len(examples):
        raise ValueError(f"example index must lie in 0..{len(examples) - 1}, got {index!r}")
    array = np.asarray(examples.dataset[int(index)]["image"], dtype=np.float32)  # (H, W, 3) in [-1, 1]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"dataset item {index} has an image of shape {array.shape}, expected (H, W, 3)")
    if array.shape[:2] != (size, size):
        pixels = ((np.clip(array, -1, 1) + 1.0) * 127.5).round().astype(np.uint8)
        pil = Image.fromarray(pixels).resize((size, size), resample=Image.BICUBIC)
        array = np.asarray(pil, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]  # (1, 3, H, W)


def example_label(examples: Examples, index: int) -> Optional[str]:
    """A caption for item ``index`` (its human label or class) when the dataset gives one."""
    item = examples.dataset[int(index)]
    for key in ("human_label", "class_label"):
        if key in item:
            return f"{key}: {item[key]}"
    return None


def class_names(examples: Examples, n_classes: Optional[int]) -> Optional[list]:
    """Names of the class labels when the dataset has them (``class_names``) and they fit the chain."""
    names = getattr(examples.dataset, "class_names", None)
    if names is None or n_classes is None or len(names) != n_classes:
        return None
    return [str(name) for name in names]
