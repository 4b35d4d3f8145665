"""Classifiers that score samples for acceptance sampling: a user's network, or the demo one.

The paper selects class-conditional ImageNet samples with a pretrained classifier (FID 21.19 with
all samples, 13.12 / 9.77 / 7.44 keeping the best 50% / 25% / 5%). Any torch module can play that
role: a small YAML file names it like every other object in this project, plus its local weights
and how it wants its input::

    target: my_package.resnet.ResNet50   # any importable nn.Module
    params: {num_classes: 1000}          # its constructor arguments
    ckpt_path: weights/resnet50.pt       # a state dict, or a checkpoint holding "state_dict"
    image_size: 224                      # optional: resize the samples first (bilinear, antialiased)
    input_range: zero_one                # minus_one_one (default) or zero_one
    mean: [0.485, 0.456, 0.406]          # optional normalisation, on the input_range scale
    std: [0.229, 0.224, 0.225]
    output_key: logits                   # optional: the entry to take when the module returns a dict

``"demo"`` is the demo feature network's large-shape-kind head (4 classes, the demo class label).

Legend: B batch, C classes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from imagebart.checkpoint_io import load_checkpoint
from imagebart.evaluation.demo_features import load_demo_features
from imagebart.util import instantiate_from_config

logger = logging.getLogger(__name__)

CONFIG_KEYS = ("target", "params", "ckpt_path", "image_size", "input_range", "mean", "std", "output_key")
INPUT_RANGES = ("minus_one_one", "zero_one")


class ImageClassifier(nn.Module):
    """Chain images (B, 3, H, W) in [-1, 1] -> class logits (B, C), whatever the network expects."""

    def __init__(self, network: nn.Module, name: str, image_size: Optional[int] = None,
                 input_range: str = "minus_one_one", mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, output_key: Optional[str] = None):
        super().__init__()
        if input_range not in INPUT_RANGES:
            raise ValueError(f"{name}: input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"{name}: give both mean and std (three values each), or neither")
        self.network, self.name, self.image_size = network.eval().requires_grad_(False), name, image_size
        self.input_range, self.output_key = input_range, output_key
        self.register_buffer("mean", None if mean is None else torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", None if std is None else torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True)
        if self.input_range == "zero_one":
            x = (x + 1.0) / 2.0
        if self.mean is not None:
            x = (x - self.mean) / self.std
        out = self.network(x)
        if isinstance(out, dict):
            key = self.output_key or "logits"
            if key not in out:
                raise ValueError(f"{self.name} returns a dict without {key!r} (it has {sorted(out)}); set output_key")
            out = out[key]
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{self.name} must return class logits of shape (B, C) for B={images.shape[0]} images, "
                             f"got {shape}")
        return out  # (B, C)


def load_classifier(spec: Union[str, Path], device=None) -> ImageClassifier:
    """``"demo"`` or a classifier YAML (see the module docstring) -> an :class:`ImageClassifier`."""
    if str(spec) == "demo":
        net = load_demo_features()
        return ImageClassifier(net, "the demo feature network (kind of the largest shape)", output_key="logits").to(device)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--classifier {spec}: expected 'demo' or a classifier YAML file (target, params, "
                                "ckpt_path, ...); no such file")
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # noqa: BLE001 - any YAML or interpolation error, named with the file
        raise ValueError(f"--classifier {path}: not a readable YAML file ({err})") from None
    if not isinstance(config, dict) or "target" not in config or "ckpt_path" not in config:
        raise ValueError(f"--classifier {path}: needs at least 'target' (the module) and 'ckpt_path' (its weights)")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"--classifier {path}: unknown keys {unknown}; known: {list(CONFIG_KEYS)}")
    network = instantiate_from_config({"target": config["target"], "params": config.get("params") or {}})
    if not isinstance(network, nn.Module):
        raise ValueError(f"--classifier {path}: target {config['target']} built a {type(network).__name__}, "
                         "not a torch module")
    state = load_checkpoint(Path(config["ckpt_path"]))
    state = state.get("state_dict", state)
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"--classifier {path}: the weights in {config['ckpt_path']} do not fit {config['target']}: "
                         f"{str(err).splitlines()[0]}") from None
    classifier = ImageClassifier(network, f"classifier {path}", image_size=config.get("image_size"),
                                 input_range=config.get("input_range", "minus_one_one"), mean=config.get("mean"),
                                 std=config.get("std"), output_key=config.get("output_key"))
    return classifier.to(device)
