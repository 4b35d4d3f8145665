"""Patch-GAN discriminator (pix2pix style, as taming's NLayerDiscriminator).

Parameter names follow taming (``main.<i>.*``) so its discriminator weights load.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def weights_init(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), batch-norm scales N(1, 0.02) with zero shift."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class NLayerDiscriminator(nn.Module):
    """Maps an image (B, C, H, W) to a map of real/fake logits, one per overlapping patch.

    ``n_layers`` stride-2 4×4 convolutions (width ndf·2^i, capped at 8·ndf), then one stride-1
    block and a 1-channel stride-1 conv. Needs H, W ≥ 2^(n_layers+2) or so (≥ 32 for 3 layers).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, use_actnorm: bool = False):
        super().__init__()
        if use_actnorm:
            raise ValueError("use_actnorm=True is not supported; use batch norm (use_actnorm: false)")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")

        def width(i):
            return ndf * min(2 ** i, 8)

        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers):
            layers += [
                nn.Conv2d(width(i - 1), width(i), 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width(i)),
                nn.LeakyReLU(0.2, True),
            ]
        layers += [
            nn.Conv2d(width(n_layers - 1), width(n_layers), 4, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width(n_layers)),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width(n_layers), 1, 4, stride=1, padding=1),
        ]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, h', w')
