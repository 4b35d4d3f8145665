"""Training loss of a reverse step p_θ(x_{t-1} | x_t).

loss = alpha · KL(q(x_{t-1} | x_t, x_0) ‖ p_θ) + (1 - alpha) · CE(p_θ, x_{t-1}),
each summed over the K codes, averaged over the L positions and then over the batch, exactly as
the original ``compute_loss``. alpha = 0 (scale 1 of the released configs) is the data
likelihood; alpha = 1 trains on the posterior only. The original's ``soft_only: true`` is
alpha = 1, and its ``temperature`` argument never changed the result, so neither exists here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def denoising_loss(logits: torch.Tensor, target: torch.Tensor, posterior: torch.Tensor, alpha: float):
    """(loss, {"loss_hard", "loss_soft"}) for logits (B, L, K), target x_{t-1} (B, L), posterior (B, L, K).

    The logged values are detached. Positions where the posterior is 0 add nothing to the KL.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (weight of the posterior KL) must lie in [0, 1], got {alpha}")
    if logits.ndim != 3 or posterior.shape != logits.shape or target.shape != logits.shape[:2]:
        raise ValueError(
            "expected logits (B, L, K), target (B, L) and posterior (B, L, K), got "
            f"{tuple(logits.shape)}, {tuple(target.shape)} and {tuple(posterior.shape)}"
        )
    loss_hard = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, L)
    loss_hard = loss_hard.mean(-1).mean()
    # kl_div(log q, p) = p · (log p - log q), taken as 0 where p = 0
    loss_soft = F.kl_div(F.log_softmax(logits, dim=-1), posterior, reduction="none")  # (B, L, K)
    loss_soft = loss_soft.sum(-1).mean(-1).mean()
    loss = loss_soft * alpha + (1.0 - alpha) * loss_hard
    return loss, {"loss_hard": loss_hard.detach(), "loss_soft": loss_soft.detach()}


def bits_per_token(nats):
    """Convert a loss in nats per token to bits per token."""
    return nats / math.log(2)
