"""Every released training config, shrunk, runs a training step; errors are named up front."""

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from conftest import tiny_first_stage_overrides
from imagebart.config import merge_configs
from imagebart.data.demo import DemoScenes
from imagebart.util import instantiate_from_config

REPO = Path(__file__).resolve().parents[2]
RELEASED = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").glob("*/**/*.yaml")
                  if not p.relative_to(REPO / "configs").as_posix().startswith(("sampling/", "demo/")))
L = 16  # tokens of the tiny first stage (4 x 4)
K = 16  # remapped codebook of the tiny first stage (every other code of 32)


@pytest.fixture(scope="module")
def tiny_remap(tmp_path_factory):
    path = tmp_path_factory.mktemp("remap") / "used.npy"
    np.save(path, np.arange(0, 2 * K, 2, dtype=np.int64))
    return path


def shrink_overrides(config, vqgan_ckpt, remap) -> list[str]:
    """Command-line overrides that make a released model tiny (its structure kept): tiny first
    stage and remap, widths 32, depth 1, sequence lengths for 16 tokens."""
    params = config.model.params
    n_cond = 1 if "conditioner_config" in params else 0
    if "GPT" in params.transformer_config.target:
        network = dict(n_layer=1, n_embd=32, n_head=2, block_size=L + n_cond, vocab_size=K)
    else:
        network = dict(dec_num_tokens=K, dim=32, enc_depth=1, dec_depth=1, enc_heads=2, dec_heads=2,
                       enc_attn_dim_head=16, dec_attn_dim_head=16, enc_max_seq_len=1 + n_cond + L, dec_max_seq_len=L)
        if "xt_size" in params.transformer_config.params:
            network["xt_size"] = L
    return [
        *tiny_first_stage_overrides(vqgan_ckpt),
        f"model.params.first_stage_config.params.remap={remap}",
        *(f"model.params.transformer_config.params.{k}={v}" for k, v in network.items()),
        f"model.params.top_k={K}",
    ]


def shrink(config_path, vqgan_ckpt, remap):
    """The released config loaded the way main.py does, with the shrinking overrides."""
    return merge_configs([config_path], shrink_overrides(OmegaConf.load(config_path), vqgan_ckpt, remap))


def tiny_trainer(**kwargs):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)


def demo_loader(n=4):
    return DataLoader(DemoScenes(split="train", size=16, length=n), batch_size=2)


@pytest.mark.parametrize("name", RELEASED)
def test_released_config_trains_a_step_when_shrunk(name, tiny_vqgan_ckpt, tiny_remap):
    config = shrink(REPO / "configs" / name, tiny_vqgan_ckpt, tiny_remap)
    model = instantiate_from_config(config.model)
    model.learning_rate = 1e-3
    assert model.num_codes == K
    before = [p.detach().clone() for p in model.transformer.parameters()]
    first_stage_before = [p.detach().clone() for p in model.first_stage_model.parameters()]
    tiny_trainer(max_steps=1, limit_val_batches=1, num_sanity_val_steps=0).fit(model, demo_loader(), demo_loader(2))
    changed = [not torch.equal(a, b) for a, b in zip(before, model.transformer.parameters())]
    assert sum(changed) > len(changed) // 2, "the optimiser step changed few transformer weights"
    assert all(torch.equal(a, b) for a, b in zip(first_stage_before, model.first_stage_model.parameters()))
    if model.use_ema:
        assert int(model.transformer_ema.num_updates) == 1


def test_checkpoints_hold_the_ema_of_their_step(tmp_path, tiny_vqgan_ckpt, tiny_remap):
    """Saved at the end of a batch, a checkpoint's EMA has seen exactly global_step updates."""
    config = base_config(tiny_vqgan_ckpt, tiny_remap)
    model = instantiate_from_config(config.model)
    every_step = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[every_step], max_steps=3, limit_val_batches=0)
    trainer.fit(model, demo_loader(8))
    paths = sorted(tmp_path.glob("*.ckpt"))
    assert len(paths) == 3
    for path in paths:
        checkpoint = torch.load(path, weights_only=False)
        step = checkpoint["global_step"]
        assert int(checkpoint["state_dict"]["transformer_ema.num_updates"]) == step
        assert all(int(state["step"]) == step for state in checkpoint["optimizer_states"][0]["state"].values())


def test_validation_logs_raw_and_ema_losses_in_nats_and_bits(tiny_vqgan_ckpt, tiny_remap):
    config = shrink(REPO / "configs/ffhq/4_scales/ffhq-geometric-scale2.yaml", tiny_vqgan_ckpt, tiny_remap)
    model = instantiate_from_config(config.model)
    trainer = tiny_trainer()
    trainer.validate(model, demo_loader(2))
    metrics = trainer.callback_metrics
    for split in ("val", "val_ema"):
        for key in ("loss", "loss_hard", "loss_soft"):
            assert f"{split}/{key}" in metrics and f"{split}/{key}_bits" in metrics
            assert metrics[f"{split}/{key}_bits"] == pytest.approx(float(metrics[f"{split}/{key}"]) / np.log(2), rel=1e-5)
    mixed = model.alpha * metrics["val/loss_soft"] + (1 - model.alpha) * metrics["val/loss_hard"]
    assert float(metrics["val/loss"]) == pytest.approx(float(mixed), rel=1e-5)


def test_joint_training_draws_a_scale_per_batch(tiny_vqgan_ckpt, tiny_remap):
    config = shrink(REPO / "configs/ffhq/ffhq_4-scales_joint-training.yaml", tiny_vqgan_ckpt, tiny_remap)
    model = instantiate_from_config(config.model)
    assert model.single_scale is None
    torch.manual_seed(0)
    scales = {int(model.draw_scales(3, "cpu")[0]) for _ in range(200)}
    assert scales == {1, 2, 3, 4}
    assert len(set(model.draw_scales(5, "cpu").tolist())) == 1  # one t for the whole batch


def test_optimizer_decays_linear_weights_only(tiny_vqgan_ckpt, tiny_remap):
    config = shrink(REPO / "configs/ffhq/4_scales/ffhq-geometric-scale1.yaml", tiny_vqgan_ckpt, tiny_remap)
    model = instantiate_from_config(config.model)
    model.learning_rate = 0.5
    [optimizer], [scheduler] = model.configure_optimizers()
    decay, no_decay = optimizer.param_groups
    linear_weights = {id(m.weight) for m in model.transformer.modules() if isinstance(m, torch.nn.Linear)}
    assert {id(p) for p in decay["params"]} == linear_weights and decay["weight_decay"] == 0.01
    assert no_decay["weight_decay"] == 0.0 and id(model.transformer.log_scalors) in {id(p) for p in no_decay["params"]}
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    # warm-up starts at lr_start (2.5e-6) times the scaled learning rate
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 2.5e-6)
    assert scheduler["interval"] == "step"


def base_config(tiny_vqgan_ckpt, tiny_remap, name="ffhq/4_scales/ffhq-geometric-scale2.yaml"):
    return shrink(REPO / "configs" / name, tiny_vqgan_ckpt, tiny_remap)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.model.params.update(single_scale=5), "single_scale must be an integer in 1..n_scales=4"),
        (lambda c: c.model.params.update(single_scale=0), "single_scale must be an integer in 1..n_scales=4"),
        (lambda c: c.model.params.update(redraw_prob="geometrik"), "geometrik"),
        (lambda c: c.model.params.update(redraw_prob=None), "redraw_prob is required"),
        (lambda c: c.model.params.transformer_config.params.update(dec_num_tokens=10), "dec_num_tokens=10 must equal"),
        (lambda c: c.model.params.transformer_config.params.update(enc_num_tokens=10), "enc_num_tokens=10"),
        (lambda c: c.model.params.transformer_config.params.update(enc_max_seq_len=8), "enc_max_seq_len=8"),
        (lambda c: c.model.params.transformer_config.params.update(dec_max_seq_len=8), "dec_max_seq_len=8"),
        (lambda c: c.model.params.update(alpha=1.5), "alpha"),
        (lambda c: c.model.params.update(alpha="half"), r"model.params.alpha .*got 'half'"),
        (lambda c: c.model.params.update(single_scale="one"), r"model.params.single_scale must be an integer.*'one'"),
        (lambda c: c.model.params.update(top_k="abc"), r"model.params.top_k .*'abc'"),
        (lambda c: c.model.params.update(top_k=0), r"model.params.top_k"),
        (lambda c: c.model.params.update(n_scales=3), r"model.params.transformer_config.params.n_scales=4 but "
                                                      r"model.params.n_scales=3"),
    ],
)
def test_config_mistakes_are_named_before_training(tiny_vqgan_ckpt, tiny_remap, edit, message):
    config = base_config(tiny_vqgan_ckpt, tiny_remap)
    edit(config)
    with pytest.raises((ValueError, TypeError), match=message):
        instantiate_from_config(config.model)


def test_gpt_too_small_is_named(tiny_vqgan_ckpt, tiny_remap):
    config = base_config(tiny_vqgan_ckpt, tiny_remap, "ffhq/4_scales/ffhq-geometric-scale4.yaml")
    config.model.params.transformer_config.params.block_size = 8
    with pytest.raises(ValueError, match="block_size=8"):
        instantiate_from_config(config.model)
    config = base_config(tiny_vqgan_ckpt, tiny_remap, "ffhq/4_scales/ffhq-geometric-scale4.yaml")
    config.model.params.transformer_config.params.vocab_size = 10
    with pytest.raises(ValueError, match="vocab_size=10 must equal"):
        instantiate_from_config(config.model)


def test_decoder_only_needs_pure_noise_at_the_last_scale(tiny_vqgan_ckpt, tiny_remap):
    config = base_config(tiny_vqgan_ckpt, tiny_remap, "ffhq/4_scales/ffhq-geometric-scale4.yaml")
    config.model.params.redraw_prob = 0.5
    with pytest.raises(ValueError, match="beta_T = 1"):
        instantiate_from_config(config.model)


def test_class_label_outside_the_vocabulary_is_named(tiny_vqgan_ckpt, tiny_remap):
    config = base_config(tiny_vqgan_ckpt, tiny_remap, "imagenet/4_scales/imagenet_geometric_scale2.yaml")
    model = instantiate_from_config(config.model)
    batch = {"image": torch.zeros(1, 16, 16, 3), "class_label": torch.tensor([5000])}
    with pytest.raises(ValueError, match="conditioning tokens must lie in 0..999"):
        model.get_conditioning(batch)


def test_first_stage_without_checkpoint_stops_before_training(tiny_vqgan_ckpt, tiny_remap):
    config = base_config(tiny_vqgan_ckpt, tiny_remap)
    config.model.params.first_stage_config.params.ckpt_path = None
    model = instantiate_from_config(config.model)
    with pytest.raises(ValueError, match="first_stage_config.params.ckpt_path is null"):
        tiny_trainer(max_steps=1).fit(model, demo_loader())


def test_checkpoint_that_does_not_fit_is_named(tmp_path, tiny_vqgan_ckpt, tiny_remap):
    config = base_config(tiny_vqgan_ckpt, tiny_remap)
    model = instantiate_from_config(config.model)
    path = tmp_path / "small.ckpt"
    torch.save({"state_dict": model.state_dict()}, path)
    config.model.params.transformer_config.params.dim = 64
    config.model.params.ckpt_path = str(path)
    with pytest.raises(ValueError, match=f"checkpoint {path} does not fit"):
        instantiate_from_config(config.model)


@pytest.mark.slow
@pytest.mark.parametrize("name", RELEASED)
def test_released_config_instantiates_at_full_size(name, reference_dir):
    """The real widths, depths and first stage (random weights; the release's remap lists)."""
    config = OmegaConf.load(REPO / "configs" / name)
    fs = config.model.params.first_stage_config.params
    fs.ckpt_path = None
    fs.remap = str(reference_dir / "data" / "vqgan_indices" / Path(fs.remap).name)
    model = instantiate_from_config(config.model)
    n_params = sum(p.numel() for p in model.transformer.parameters())
    assert n_params > 50e6


@pytest.mark.parametrize("name, joint", [("ffhq/4_scales/ffhq-geometric-scale2.yaml", False),
                                         ("ffhq/ffhq_4-scales_joint-training.yaml", True),
                                         ("imagenet/4_scales/imagenet_geometric_scale4.yaml", False)])
def test_log_images(name, joint, tiny_vqgan_ckpt, tiny_remap):
    model = instantiate_from_config(base_config(tiny_vqgan_ckpt, tiny_remap, name).model).eval()
    batch = next(iter(demo_loader(2)))
    logs = model.log_images(batch, N=2)
    for key in ("inputs", "x_t-1 (target)", "x_t (the network's input)", "x_t-1 sampled from x_t"):
        assert logs[key].shape == (2, 3, 16, 16), key
        assert torch.isfinite(logs[key]).all(), key
    assert torch.equal(logs["inputs"], batch["image"].permute(0, 3, 1, 2))
    assert len(logs["column_titles"]) == 2 and all(title.startswith("t=") for title in logs["column_titles"])
    # x_0 -> x_T: a row of T + 1 pictures
    assert logs["forward chain x_0 -> x_T of input 1"].shape == (5, 3, 16, 16)
    assert ("reverse chain x_T -> x_0, sampled" in logs) == joint


def test_gpt_input_vocabulary_must_hold_the_class_tokens(tiny_vqgan_ckpt, tiny_remap):
    config = base_config(tiny_vqgan_ckpt, tiny_remap, "imagenet/4_scales/imagenet_geometric_scale4.yaml")
    config.model.params.transformer_config.params.input_vocab_size = 10
    with pytest.raises(ValueError, match=r"input_vocab_size \(or vocab_size\)=10 must be >="):
        instantiate_from_config(config.model)


def test_gpt_accepts_class_tokens_beyond_the_codebook(tiny_vqgan_ckpt, tiny_remap):
    # ImageNet's last scale predicts K codes but reads 1000 ids: class 990 is a valid token
    model = instantiate_from_config(base_config(tiny_vqgan_ckpt, tiny_remap,
                                                "imagenet/4_scales/imagenet_geometric_scale4.yaml").model)
    assert model.transformer.input_vocabulary == 1000 and model.transformer.output_vocabulary == K
    cond = model.get_conditioning({"class_label": torch.tensor([990])})
    assert cond.tolist() == [[990]]
