"""The negative ELBO of a stacked chain, from each scale's validation loss.

-ELBO = E[-log p(x_0|x_1)] + Σ_{t=2..T} E[KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t))] + KL(q(x_T|x_0) ‖ U(K))

Scale 1 contributes its cross-entropy (``loss_hard``), scales t ≥ 2 their posterior KL
(``loss_soft``), and the prior term is exact (0 when ᾱ_T = 0, i.e. x_T is pure noise).
All terms are in nats per token; bits per image dimension spread them over the H·W·3 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from imagebart.diffusion.losses import bits_per_token
from imagebart.models.inputs import batch_size


@dataclass
class ElboReport:
    """Per-scale terms and totals (nats per token unless named otherwise)."""

    terms: dict[int, float]  # t -> nats per token
    prior: float
    tokens_per_image: int
    pixels_per_image: int
    batches: dict[int, int] = field(default_factory=dict)

    @property
    def nats_per_token(self) -> float:
        return sum(self.terms.values()) + self.prior

    @property
    def bits_per_token(self) -> float:
        return bits_per_token(self.nats_per_token)

    @property
    def bits_per_dim(self) -> float:
        return self.bits_per_token * self.tokens_per_image / (self.pixels_per_image * 3)

    def table(self) -> str:
        rows = ["| term | nats/token | bits/token |", "|---|---|---|"]
        for t in sorted(self.terms):
            name = "-log p(x0|x1)" if t == 1 else f"KL scale {t}"
            rows.append(f"| {name} | {self.terms[t]:.4f} | {bits_per_token(self.terms[t]):.4f} |")
        rows.append(f"| prior KL(q(x_T|x0) ‖ U) | {self.prior:.4f} | {bits_per_token(self.prior):.4f} |")
        rows.append(f"| **-ELBO** | {self.nats_per_token:.4f} | {self.bits_per_token:.4f} |")
        rows.append(f"\nbits per image dimension: {self.bits_per_dim:.4f} "
                    f"({self.tokens_per_image} tokens over {self.pixels_per_image} x 3 pixel values)")
        return "\n".join(rows)


def prior_kl(alphacum_T: float, num_codes: int) -> float:
    """KL(q(x_T | x_0) ‖ Uniform(K)) per token: the same for every x_0."""
    k = num_codes
    p_same = alphacum_T + (1 - alphacum_T) / k
    p_other = (1 - alphacum_T) / k
    kl = p_same * math.log(p_same * k)
    if p_other > 0:
        kl += (k - 1) * p_other * math.log(p_other * k)
    return kl


@torch.no_grad()
def scale_term(model, batches) -> tuple[float, int]:
    """Mean ELBO term of one scale's model over ``batches`` (EMA weights when it has them)."""
    total, count = 0.0, 0
    with model.ema_scope():
        for batch_idx, batch in enumerate(batches):
            _, log = model.shared_step(batch, batch_idx, split="eval")
            key = "eval/loss_hard" if model.single_scale == 1 else "eval/loss_soft"
            size = batch_size(model, batch)
            total += float(log[key]) * size
            count += size
    if count == 0:
        raise ValueError("no validation examples to evaluate the ELBO on")
    return total / count, count


def chain_elbo(models, batches_for_scale, image_size: int) -> ElboReport:
    """-ELBO of ``models`` (scale 1 first, each trained with ``single_scale``)."""
    terms, counts = {}, {}
    for t, model in enumerate(models, start=1):
        if model.single_scale not in (t, None):
            raise ValueError(f"model {t} of the chain was trained for scale {model.single_scale}")
        if model.single_scale is None:  # a jointly trained model: evaluate it at scale t
            model.single_scale = t
            try:
                terms[t], counts[t] = scale_term(model, batches_for_scale(t))
            finally:
                model.single_scale = None
        else:
            terms[t], counts[t] = scale_term(model, batches_for_scale(t))
    last = models[-1]
    return ElboReport(terms=terms, prior=prior_kl(float(last.alphacum[-1]), last.num_codes),
                      tokens_per_image=last.tokens_per_image, pixels_per_image=image_size * image_size,
                      batches=counts)
