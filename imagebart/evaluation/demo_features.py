"""A small feature network for the demo scenes, so that a "demo FID" needs no download.

Inception features mean nothing for 32x32 pictures of coloured shapes, and its weights are not
available offline. This CNN is trained on the demo data itself to see what matters in it: the
kind and colour of the large shape, how many shapes there are, and which kinds the small ones
are. Its penultimate layer (``features``, 128 values) plays Inception's pool-3 role for FID, KID
and precision / recall; its large-shape-kind logits (``logits``, 4 classes) play the classifier's
role for an Inception-Score-like number and for acceptance sampling.

Legend: B batch, D feature width (128).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imagebart.data.demo import KINDS, SHAPE_COLOURS, DemoScenes

logger = logging.getLogger(__name__)

N_KINDS, N_COLOURS, MAX_SHAPES = len(KINDS), len(SHAPE_COLOURS), 4
FEATURE_WIDTH = 128
HEADS = {"kind": N_KINDS, "colour": N_COLOURS, "count": MAX_SHAPES, "small_kinds": N_KINDS}


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class DemoFeatureNet(nn.Module):
    """32x32 RGB in [-1, 1] -> 128 features -> heads (kind, colour, count, small kinds)."""

    def __init__(self, image_size: int = 32, width: int = 32):
        super().__init__()
        self.image_size = image_size
        self.num_features = FEATURE_WIDTH
        self.body = nn.Sequential(_block(3, width), _block(width, 2 * width), _block(2 * width, 4 * width),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(4 * width * 4, FEATURE_WIDTH), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({name: nn.Linear(FEATURE_WIDTH, n) for name, n in HEADS.items()})
        # features are reported scaled to unit mean variance per dimension on the training data, so
        # KID's polynomial kernel (x·y/D + 1)^3 sees values of the size it was designed for
        self.register_buffer("feature_scale", torch.tensor(1.0))

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"the demo feature network reads (B, 3, H, W) images, got {tuple(images.shape)}")
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) features of images in [-1, 1]."""
        return self.body(self._check(images)) * self.feature_scale

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features`` (B, D), every head's logits, and ``logits`` = the kind head (the class label)."""
        hidden = self.body(self._check(images))
        out = {"features": hidden * self.feature_scale, **{name: head(hidden) for name, head in self.heads.items()}}
        out["logits"] = out["kind"]
        return out


# labels


def scene_targets(shapes) -> dict[str, np.ndarray]:
    """What the network must tell about a picture with these shapes (the large one first)."""
    small = np.zeros(N_KINDS, dtype=np.float32)
    for shape in shapes[1:]:
        small[shape.kind] = 1.0
    return {"kind": np.int64(shapes[0].kind), "colour": np.int64(shapes[0].colour),
            "count": np.int64(len(shapes) - 1), "small_kinds": small}


def scene_arrays(dataset: DemoScenes) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every picture (N, 3, H, W) in [-1, 1] and its targets, drawn once."""
    images, targets = [], {name: [] for name in HEADS}
    for index in range(len(dataset)):
        image, shapes = dataset.draw(dataset.rng(index))
        images.append(image * 2.0 - 1.0)
        for name, value in scene_targets(shapes).items():
            targets[name].append(value)
    images = torch.from_numpy(np.stack(images).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    return images, {name: torch.from_numpy(np.stack(v)) for name, v in targets.items()}


def head_losses(outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
    return {"kind": F.cross_entropy(outputs["kind"], targets["kind"]),
            "colour": F.cross_entropy(outputs["colour"], targets["colour"]),
            "count": F.cross_entropy(outputs["count"], targets["count"]),
            "small_kinds": F.binary_cross_entropy_with_logits(outputs["small_kinds"], targets["small_kinds"])}


@torch.no_grad()
def accuracies(net: DemoFeatureNet, images: torch.Tensor, targets: dict, batch_size: int = 500) -> dict:
    """Per-head accuracy (small kinds: all four presence bits right)."""
    net.eval()
    right = {name: 0 for name in HEADS}
    for start in range(0, images.shape[0], batch_size):
        out = net(images[start:start + batch_size])
        part = {k: v[start:start + batch_size] for k, v in targets.items()}
        for name in ("kind", "colour", "count"):
            right[name] += int((out[name].argmax(-1) == part[name]).sum())
        right["small_kinds"] += int(((out["small_kinds"] > 0).float() == part["small_kinds"]).all(-1).sum())
    return {name: n / images.shape[0] for name, n in right.items()}


def train_demo_features(n_train: int = 20000, n_val: int = 1000, epochs: int = 8, batch_size: int = 128,
                        lr: float = 2e-3, seed: int = 0) -> tuple[DemoFeatureNet, dict]:
    """Train on the demo train split; returns the network and its validation accuracies."""
    torch.manual_seed(seed)
    train_images, train_targets = scene_arrays(DemoScenes(split="train", length=n_train))
    val_images, val_targets = scene_arrays(DemoScenes(split="validation", length=n_val))
    net = DemoFeatureNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n_train, generator=generator)
        for first in range(0, n_train, batch_size):
            index = order[first:first + batch_size]
            images = train_images[index]
            flip = torch.rand(images.shape[0], generator=generator) < 0.5  # mirror images keep every label
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            losses = head_losses(net(images), {k: v[index] for k, v in train_targets.items()})
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            scheduler.step()
        logger.info("epoch %d/%d (%.0f s): validation accuracy %s", epoch + 1, epochs, time.time() - start,
                    {k: round(v, 4) for k, v in accuracies(net, val_images, val_targets).items()})
    net.eval()
    calibrate_feature_scale(net, train_images)
    return net, accuracies(net, val_images, val_targets)


@torch.no_grad()
def calibrate_feature_scale(net: DemoFeatureNet, images: torch.Tensor, batch_size: int = 500) -> float:
    """Set ``feature_scale`` so that the features of ``images`` have unit mean variance per dimension."""
    net.eval()
    net.feature_scale.fill_(1.0)
    features = torch.cat([net.features(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)])
    net.feature_scale.fill_(1.0 / features.var(0).mean().sqrt())
    return float(net.feature_scale)


# the shipped weights


DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "demo" / "features.ckpt"


def save_demo_features(net: DemoFeatureNet, path: Union[str, Path], **info) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": net.state_dict(), "image_size": net.image_size, **info}, tmp)
    tmp.replace(path)
    return path


def load_demo_features(path: Optional[Union[str, Path]] = None) -> DemoFeatureNet:
    """The shipped demo feature network (``models/demo/features.ckpt``), or the one at ``path``."""
    from imagebart.checkpoint_io import load_checkpoint

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"demo feature weights {path} not found; train them with "
                                "python scripts/train_demo_features.py (about 2 minutes on a CPU)")
    checkpoint = load_checkpoint(path)
    net = DemoFeatureNet(image_size=int(checkpoint.get("image_size", 32)))
    try:
        net.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path} does not hold demo feature network weights: {err}") from err
    return net.eval().requires_grad_(False)
