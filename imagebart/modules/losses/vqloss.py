"""VQGAN training losses: reconstruction + codebook terms and an optional patch-GAN.

``VQLPIPSWithDiscriminator`` keeps taming's parameter names and call signature, so taming's
VQGAN configs point here. Differences (documented choices):
- the pixel loss is L1 + L2 by default (``pixel_loss``: "l1" reproduces taming's term);
- there is no LPIPS term (it needs VGG16 weights we do not ship): ``perceptual_weight`` must be 0;
- the adaptive GAN weight is taming's ``calculate_adaptive_weight`` (ratio of the gradient norms
  of the reconstruction and GAN losses at the decoder's last layer); it is 0 when no gradient is
  available (validation).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from imagebart.modules.losses.discriminator import NLayerDiscriminator, weights_init


class DummyLoss(nn.Module):
    """Placeholder loss of a frozen first stage (its config names one; nothing is computed)."""


# GAN losses


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def adopt_weight(weight: float, global_step: int, threshold: int = 0, value: float = 0.0) -> float:
    """``weight`` once ``global_step`` reached ``threshold``, ``value`` before."""
    return value if global_step < threshold else weight


PIXEL_LOSSES = ("l1", "l2", "l1+l2")


class VQLPIPSWithDiscriminator(nn.Module):
    """Reconstruction + codebook loss, plus a hinge (or vanilla) patch-GAN after ``disc_start`` steps.

    ``forward(codebook_loss, inputs, reconstructions, optimizer_idx, global_step, last_layer)``
    returns ``(loss, log)``: optimizer_idx 0 is the autoencoder loss, 1 the discriminator loss.
    ``disc_factor: 0`` (or ``disc_weight: 0``) turns the GAN off entirely (no discriminator built).
    """

    def __init__(
        self,
        disc_start: int,
        codebook_weight: float = 1.0,
        pixelloss_weight: float = 1.0,
        disc_num_layers: int = 3,
        disc_in_channels: int = 3,
        disc_factor: float = 1.0,
        disc_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        use_actnorm: bool = False,
        disc_conditional: bool = False,
        disc_ndf: int = 64,
        disc_loss: str = "hinge",
        pixel_loss: str = "l1+l2",
    ):
        super().__init__()
        if disc_loss not in ("hinge", "vanilla"):
            raise ValueError(f"disc_loss must be 'hinge' or 'vanilla', got {disc_loss!r}")
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss must be one of {PIXEL_LOSSES}, got {pixel_loss!r}")
        if perceptual_weight > 0:
            raise ValueError(
                f"perceptual_weight={perceptual_weight}: the LPIPS perceptual loss is not available "
                "here (it needs VGG16/LPIPS weights, which are not shipped); set perceptual_weight: 0"
            )
        if disc_conditional:
            raise ValueError("disc_conditional=True is not supported (no conditioning input here)")
        self.codebook_weight = codebook_weight
        self.pixel_weight = pixelloss_weight
        self.pixel_loss = pixel_loss
        self.perceptual_weight = perceptual_weight
        self.discriminator_iter_start = disc_start
        self.disc_factor = disc_factor
        self.discriminator_weight = disc_weight
        self.disc_conditional = disc_conditional
        self.disc_loss = hinge_d_loss if disc_loss == "hinge" else vanilla_d_loss
        self.discriminator: NLayerDiscriminator | None = None
        if disc_factor > 0 and disc_weight > 0:
            self.discriminator = NLayerDiscriminator(
                input_nc=disc_in_channels, ndf=disc_ndf, n_layers=disc_num_layers, use_actnorm=use_actnorm
            )
            self.discriminator.apply(weights_init)

    @property
    def has_discriminator(self) -> bool:
        return self.discriminator is not None

    def gan_active(self, global_step: int) -> bool:
        return self.has_discriminator and global_step >= self.discriminator_iter_start

    def calculate_adaptive_weight(self, nll_loss, g_loss, last_layer: torch.Tensor) -> torch.Tensor:
        """Scale the GAN loss so its gradient at ``last_layer`` matches the reconstruction's."""
        nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        d_weight = nll_grads.norm() / (g_grads.norm() + 1e-4)
        return d_weight.clamp(0.0, 1e4).detach() * self.discriminator_weight

    def reconstruction_loss(self, inputs, reconstructions) -> torch.Tensor:
        diff = inputs.contiguous() - reconstructions.contiguous()  # (B, C, H, W)
        if self.pixel_loss == "l1":
            return diff.abs().mean()
        if self.pixel_loss == "l2":
            return diff.pow(2).mean()
        return diff.abs().mean() + diff.pow(2).mean()

    def forward(self, codebook_loss, inputs, reconstructions, optimizer_idx, global_step,
                last_layer=None, cond=None, split="train"):
        if cond is not None:
            raise ValueError("cond is not supported (disc_conditional is False)")
        if optimizer_idx == 0:
            return self._autoencoder_loss(codebook_loss, inputs, reconstructions, global_step,
                                          last_layer, split)
        if optimizer_idx == 1:
            return self._discriminator_loss(inputs, reconstructions, global_step, split)
        raise ValueError(f"optimizer_idx must be 0 (autoencoder) or 1 (discriminator), got {optimizer_idx}")

    def _autoencoder_loss(self, codebook_loss, inputs, reconstructions, global_step, last_layer, split):
        rec_loss = self.reconstruction_loss(inputs, reconstructions)
        nll_loss = self.pixel_weight * rec_loss
        zero = torch.zeros((), device=inputs.device)
        g_loss, d_weight = zero, zero
        disc_factor = adopt_weight(self.disc_factor, global_step, threshold=self.discriminator_iter_start)
        if self.gan_active(global_step):
            logits_fake = self.discriminator(reconstructions.contiguous())  # (B, 1, h', w')
            g_loss = -logits_fake.mean()
            if self.training and torch.is_grad_enabled() and last_layer is not None:
                d_weight = self.calculate_adaptive_weight(nll_loss, g_loss, last_layer)
        loss = nll_loss + d_weight * disc_factor * g_loss + self.codebook_weight * codebook_loss.mean()
        log = {
            f"{split}/total_loss": loss.detach(),
            f"{split}/quant_loss": codebook_loss.detach().mean(),
            f"{split}/nll_loss": nll_loss.detach(),
            f"{split}/rec_loss": rec_loss.detach(),
            f"{split}/d_weight": d_weight.detach(),
            f"{split}/disc_factor": torch.tensor(float(disc_factor)),
            f"{split}/g_loss": g_loss.detach(),
        }
        return loss, log

    def _discriminator_loss(self, inputs, reconstructions, global_step, split):
        if not self.has_discriminator:
            raise ValueError("this loss has no discriminator (disc_factor or disc_weight is 0)")
        logits_real = self.discriminator(inputs.contiguous().detach())  # (B, 1, h', w')
        logits_fake = self.discriminator(reconstructions.contiguous().detach())
        disc_factor = adopt_weight(self.disc_factor, global_step, threshold=self.discriminator_iter_start)
        d_loss = disc_factor * self.disc_loss(logits_real, logits_fake)
        log = {
            f"{split}/disc_loss": d_loss.detach(),
            f"{split}/logits_real": logits_real.detach().mean(),
            f"{split}/logits_fake": logits_fake.detach().mean(),
        }
        return d_loss, log
