"""Conditioners turn a batch entry into tokens the encoder reads after the scale token.

Classifier-free guidance needs an "unconditional" input too: a conditioner that supports it has
``null_condition(batch_size, device)``, the tokens that stand for "no condition", which training
substitutes with probability ``cond_drop_prob`` (:func:`drop_condition`) and guided sampling
feeds to its unconditional branch.

Legend: B batch, C condition tokens.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class ClassProvider(nn.Module):
    """A class label as one extra encoder token: ``batch[key]`` of shape (B,) -> (B, 1).

    The null token ("no class", for classifier-free guidance) is ``n_classes``: one id past the
    last class, so the encoder vocabulary must hold ``n_classes + 1`` ids when it is used.
    """

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

    @property
    def null_token(self) -> int:
        """The id that means "no class"."""
        if self.n_classes is None:
            raise ValueError("classifier-free guidance needs conditioner_config.params.n_classes: the null "
                             "class token is n_classes (one id past the last class)")
        return int(self.n_classes)

    def null_condition(self, batch_size: int, device=None) -> torch.Tensor:
        """(B, 1) null tokens: the unconditional input."""
        return torch.full((batch_size, 1), self.null_token, dtype=torch.long, device=device)

    # what the denoiser checks

    condition_length = 1  # encoder positions a label takes

    def vocabulary_needed(self, with_null: bool = False) -> int:
        """Encoder ids the labels use (0 when ``n_classes`` is unknown), the null token included if asked."""
        return self.null_token + 1 if with_null else int(self.n_classes or 0)


def drop_condition(cond: torch.Tensor, null: torch.Tensor, prob: float,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Replace whole rows of ``cond`` (B, C) by ``null`` (B, C) with probability ``prob`` each."""
    if prob <= 0:
        return cond
    drop = torch.rand(cond.shape[0], device=cond.device, generator=generator) < prob  # (B,)
    return torch.where(drop[:, None], null.to(cond), cond)
