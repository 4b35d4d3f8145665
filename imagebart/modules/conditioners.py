"""Conditioners turn a batch entry into tokens the encoder reads after the scale token."""

import torch
from torch import nn


class ClassProvider(nn.Module):
    """A class label as one extra encoder token: ``batch[key]`` of shape (B,) -> (B, 1)."""

    def __init__(self, key: str = "class_label"):
        super().__init__()
        self.key = key

    def forward(self, batch) -> torch.Tensor:
        if self.key not in batch:
            raise KeyError(
                f"ClassProvider expects the batch to hold {self.key!r}; it has {sorted(batch)}"
            )
        labels = torch.as_tensor(batch[self.key])
        return labels.long().reshape(-1)[:, None]  # (B, 1)
