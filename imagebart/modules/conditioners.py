"""Conditioners turn a batch entry into tokens the encoder reads after the scale token."""

import torch
from torch import nn


class ClassProvider(nn.Module):
    """A class label as one extra encoder token: ``batch[key]`` of shape (B,) -> (B, 1)."""

    def __init__(self, key: str = "class_label", n_classes: int | None = None):
        super().__init__()
        self.key = key
        self.n_classes = n_classes  # optional: lets the denoiser check its vocabulary up front

    def forward(self, batch) -> torch.Tensor:
        if self.key not in batch:
            raise KeyError(
                f"ClassProvider expects the batch to hold {self.key!r}; it has {sorted(batch)}"
            )
        labels = torch.as_tensor(batch[self.key])
        if self.n_classes is not None and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"batch[{self.key!r}] holds labels outside 0..{self.n_classes - 1}")
        return labels.long().reshape(-1)[:, None]  # (B, 1)
