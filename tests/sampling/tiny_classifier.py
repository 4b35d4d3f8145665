"""A tiny real classifier for acceptance-sampling tests (importable as a config target)."""

import torch
from torch import nn


class TinyClassifier(nn.Module):
    """Logits (B, C) from the mean colour and the mean squared colour of an image."""

    def __init__(self, n_classes: int = 10, seed: int = 0):
        super().__init__()
        self.linear = nn.Linear(6, n_classes)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(3 * torch.randn(n_classes, 6, generator=g))
            self.linear.bias.copy_(torch.randn(n_classes, generator=g))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stats = torch.cat((images.mean(dim=(2, 3)), (images ** 2).mean(dim=(2, 3))), dim=1)  # (B, 6)
        return self.linear(stats)
