"""A few steps of VQGAN training on CPU: both optimizers step, the checkpoint feeds the wrapper."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from imagebart.checkpoint_io import load_checkpoint
from imagebart.models.vqgan import VQGANWrapper
from imagebart.util import instantiate_from_config

DD = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32,
          ch_mult=[1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)


def config(disc_start=1, **loss_params):
    return {
        "target": "imagebart.models.vqgan_training.VQModel",
        "params": {
            "embed_dim": 4, "n_embed": 16, "ddconfig": DD,
            "lossconfig": {
                "target": "imagebart.modules.losses.vqloss.VQLPIPSWithDiscriminator",
                "params": dict(disc_start=disc_start, disc_num_layers=2, disc_ndf=8, **loss_params),
            },
        },
    }


class Blobs(Dataset):
    """Smooth random images, HWC in [-1, 1], as the datasets yield them."""

    def __init__(self, n=8):
        g = torch.Generator().manual_seed(0)
        low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
        self.images = torch.nn.functional.interpolate(low, size=16, mode="bilinear").permute(0, 2, 3, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i]}


def trainer(max_steps):
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=1, val_check_interval=2)


def test_training_steps_gan_on_after_step_1(tmp_path):
    torch.manual_seed(0)
    model = instantiate_from_config(config(disc_start=1))
    model.learning_rate = 1e-3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(Blobs(), batch_size=4)
    t = trainer(max_steps=5)  # batch 1: autoencoder only (1 step); then 2 optimizer steps per batch
    t.fit(model, loader, loader)

    after = model.state_dict()
    for name in ("encoder.conv_in.weight", "decoder.conv_out.weight", "quantize.embedding.weight",
                 "loss.discriminator.main.0.weight"):
        assert not torch.equal(before[name], after[name]), name
    metrics = t.callback_metrics
    for key in ("train/rec_loss", "train/q_loss", "train/total_loss", "train/disc_loss",
                "val/rec_loss", "val/total_loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert metrics["train/d_weight"] > 0  # adaptive weight computed once the GAN is on

    ckpt = tmp_path / "vq.ckpt"
    t.save_checkpoint(ckpt)
    assert load_checkpoint(ckpt)["hyper_parameters"]["n_embed"] == 16
    wrapper = VQGANWrapper(embed_dim=4, n_embed=16, ddconfig=DD, ckpt_path=str(ckpt)).freeze()
    x = Blobs()[0]["image"].permute(2, 0, 1)[None]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapper(x)[0], model(x)[0])
    logged = model.log_images(Blobs()[0:2])
    assert logged["inputs"].shape == logged["reconstructions"].shape == (2, 3, 16, 16)
    assert logged["reconstructions"].abs().max() <= 1


def test_without_discriminator_single_optimizer():
    model = instantiate_from_config(config(disc_start=0, disc_weight=0.0))
    assert model.loss.discriminator is None
    assert not isinstance(model.configure_optimizers(), (list, tuple))
    assert model.learning_rate > 0  # default when the training script does not set it
    trainer(max_steps=2).fit(model, DataLoader(Blobs(), batch_size=4))


def test_loss_refuses_lpips_without_weights():
    with pytest.raises(ValueError, match="perceptual_weight"):
        instantiate_from_config(config(perceptual_weight=1.0))
