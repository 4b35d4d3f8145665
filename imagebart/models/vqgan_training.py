"""Training a VQGAN first stage with Lightning 2 (taming's ``VQModel``, manual optimisation).

The autoencoder lives in :class:`~imagebart.models.vqgan.VQGANWrapper`; this subclass adds the
loss and the training loop. Its state dict keeps the wrapper's top-level names (``encoder.*``,
``decoder.*``, ``quantize.*``, ``quant_conv.*``, ``post_quant_conv.*``) plus ``loss.*``, which the
wrapper drops when loading, so a checkpoint written here is a valid ``ckpt_path`` for it.

Optimisation: Adam with betas (0.5, 0.9) for the autoencoder and, when the loss has a
discriminator, a second Adam for it. With two optimizers Lightning counts each ``step()`` in
``global_step``: before ``disc_start`` one step per batch, afterwards two.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch

from imagebart.models.vqgan import VQGANWrapper
from imagebart.util import instantiate_from_config

DEFAULT_LEARNING_RATE = 4.5e-6  # taming's base_learning_rate; the training script overrides it


def _plain(obj):
    """Config containers (OmegaConf included) as plain dicts/lists, safe to store in checkpoints."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return [_plain(v) for v in obj]
    return obj


class VQModel(VQGANWrapper, pl.LightningModule):
    """A trainable VQGAN; ``learning_rate`` is set from outside (base lr × batch size, ...)."""

    def __init__(
        self,
        embed_dim: int,
        n_embed: int,
        ddconfig: Mapping[str, Any],
        lossconfig: Mapping[str, Any] | None = None,
        ckpt_path: str | None = None,
        ignore_keys: Sequence[str] = (),
        image_key: str = "image",
        colorize_nlabels: int | None = None,
        monitor: str | None = "val/rec_loss",
        remap: str | None = None,
        sane_index_shape: bool = False,
        learning_rate: float | None = None,
    ):
        super().__init__(
            embed_dim=embed_dim, n_embed=n_embed, ddconfig=ddconfig, ckpt_path=None,
            image_key=image_key, colorize_nlabels=colorize_nlabels, monitor=monitor,
            remap=remap, sane_index_shape=sane_index_shape,
        )
        if lossconfig is None:
            raise ValueError(
                "VQModel needs a lossconfig, e.g. "
                "imagebart.modules.losses.vqloss.VQLPIPSWithDiscriminator"
            )
        self.loss = instantiate_from_config(lossconfig)
        if not hasattr(self.loss, "reconstruction_loss"):
            raise ValueError(
                f"lossconfig target {lossconfig.get('target')!r} cannot train a VQGAN; "
                "use imagebart.modules.losses.vqloss.VQLPIPSWithDiscriminator"
            )
        self.learning_rate = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
        self.automatic_optimization = False
        # a sampler or a denoiser config needs these to rebuild the first stage from the checkpoint
        self.save_hyperparameters(
            _plain({"embed_dim": embed_dim, "n_embed": n_embed, "ddconfig": ddconfig,
                    "remap": remap, "sane_index_shape": sane_index_shape})
        )
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    def init_from_ckpt(self, path, ignore_keys=()):
        """Resume the autoencoder weights only (the loss / discriminator start fresh)."""
        loss, self.loss = self.loss, None
        try:
            super().init_from_ckpt(path, ignore_keys=ignore_keys)
        finally:
            self.loss = loss

    def get_last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    # training

    def configure_optimizers(self):
        lr = self.learning_rate
        ae_params = [p for n, p in self.named_parameters() if not n.startswith("loss.")]
        opt_ae = torch.optim.Adam(ae_params, lr=lr, betas=(0.5, 0.9))
        if not self.loss.has_discriminator:
            return opt_ae
        opt_disc = torch.optim.Adam(self.loss.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
        return [opt_ae, opt_disc]

    def training_step(self, batch, batch_idx):
        optimizers = self.optimizers()
        opt_ae = optimizers[0] if isinstance(optimizers, (list, tuple)) else optimizers
        step = self.global_step
        gan_on = self.loss.gan_active(step)

        x = self.get_input(batch, self.image_key)  # (B, C, H, W)
        xrec, qloss = self(x)

        # autoencoder step
        aeloss, log_ae = self.loss(qloss, x, xrec, 0, step, last_layer=self.get_last_layer(),
                                   split="train")
        opt_ae.zero_grad()
        self.manual_backward(aeloss)
        opt_ae.step()
        log_kw = dict(on_step=True, on_epoch=False, batch_size=len(x))  # one column per name: train/rec_loss, ...
        self.log("train/rec_loss", log_ae["train/rec_loss"], prog_bar=True, **log_kw)
        self.log("train/q_loss", qloss.detach(), **log_kw)
        self.log_dict({k: v for k, v in log_ae.items() if k != "train/rec_loss"}, **log_kw)

        # discriminator step (only once the GAN is on)
        if gan_on:
            opt_disc = optimizers[1]
            discloss, log_disc = self.loss(qloss, x, xrec.detach(), 1, step, split="train")
            opt_disc.zero_grad()
            self.manual_backward(discloss)
            opt_disc.step()
            self.log_dict(log_disc, **log_kw)
        return aeloss.detach()

    def validation_step(self, batch, batch_idx):
        x = self.get_input(batch, self.image_key)
        xrec, qloss = self(x)
        step = self.global_step
        aeloss, log_ae = self.loss(qloss, x, xrec, 0, step, split="val")
        log_kw = dict(on_epoch=True, sync_dist=True, batch_size=len(x))
        self.log("val/rec_loss", log_ae["val/rec_loss"], prog_bar=True, **log_kw)
        self.log("val/q_loss", qloss.detach(), **log_kw)
        self.log_dict({k: v for k, v in log_ae.items() if k != "val/rec_loss"}, **log_kw)
        if self.loss.gan_active(step):
            _, log_disc = self.loss(qloss, x, xrec, 1, step, split="val")
            self.log_dict(log_disc, **log_kw)
        return aeloss

    # logging

    @torch.no_grad()
    def log_images(self, batch, **kwargs) -> dict[str, torch.Tensor]:
        """Inputs and reconstructions, (B, 3, H, W) in [-1, 1]."""
        x = self.get_input(batch, self.image_key).to(self.device)
        xrec, _ = self(x)
        return {"inputs": x, "reconstructions": xrec.clamp(-1.0, 1.0)}
