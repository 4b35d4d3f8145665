"""The denoisers against the original's outputs, loaded the way a user does: config + checkpoint.

Each folder of ``../shared/reference/checkpoints`` holds a tiny model written by the original
code (2021 x-transformers names, LitEma shadows), its config and recorded inputs / outputs.
"""

import pytest
import torch
from omegaconf import OmegaConf

from imagebart.util import instantiate_from_config

FIXTURES = ["xtransformer", "residual_scaled_xtransformer", "class_conditional_xtransformer", "decoder_only_gpt"]
ATOL = 1e-5


def load_fixture(reference_dir, name):
    folder = reference_dir / "checkpoints" / name
    config = OmegaConf.load(folder / "config.yaml")
    # the fixture's remap path is relative to its folder (the release's are relative to the cwd)
    config.model.params.first_stage_config.params.remap = str(folder / "vqgan_used_indices.npy")
    config.model.params.ckpt_path = str(folder / "model.ckpt")
    model = instantiate_from_config(config.model).eval()
    return model, torch.load(folder / "io.pt")


@pytest.fixture(scope="module", params=FIXTURES)
def fixture(request, reference_dir):
    return request.param, *load_fixture(reference_dir, request.param)


def forward(model, io, x_prev, x_t_or_c, scale):
    if "forward_arg_c_indices" in io:  # decoder-only: c = [T]
        return model(x_prev, x_t_or_c)[0]
    return model(x_prev, x_t_or_c, scale)[0]


def forward_inputs(io):
    if "forward_arg_c_indices" in io:
        return io["x_tm1"], io["forward_arg_c_indices"], io["scale"]
    return io["x_tm1"], io["forward_arg_c"], io["scale"]


def test_logits_raw_and_ema(fixture):
    _, model, io = fixture
    torch.testing.assert_close(forward(model, io, *forward_inputs(io)), io["logits"], atol=ATOL, rtol=0)
    with model.ema_scope():
        torch.testing.assert_close(forward(model, io, *forward_inputs(io)), io["logits_ema"], atol=ATOL, rtol=0)
    # the raw weights are back after the scope
    torch.testing.assert_close(forward(model, io, *forward_inputs(io)), io["logits"], atol=ATOL, rtol=0)


def test_losses(fixture):
    _, model, io = fixture
    loss, log = model.compute_loss(io["logits"], io["target"], io["posterior"])
    torch.testing.assert_close(loss, io["loss"], atol=ATOL, rtol=0)
    torch.testing.assert_close(log["train/loss_hard"], io["loss_hard"], atol=ATOL, rtol=0)
    torch.testing.assert_close(log["train/loss_soft"], io["loss_soft"], atol=ATOL, rtol=0)
    loss_ema, _ = model.compute_loss(io["logits_ema"], io["target"], io["posterior"])
    torch.testing.assert_close(loss_ema, io["loss_ema"], atol=ATOL, rtol=0)
    alpha = model.alpha
    for mix in (0.0, 0.5, 1.0):
        model.alpha = mix
        torch.testing.assert_close(model.compute_loss(io["logits"], io["target"], io["posterior"])[0],
                                   io[f"loss_alpha_{mix}"], atol=ATOL, rtol=0)
    model.alpha = alpha


def test_get_scales_reproduces_the_original_draws(fixture):
    _, model, io = fixture
    torch.manual_seed(int(io["get_scales_torch_seed"]))
    _, _, x_prev, x_t, scale, _, posterior = model.get_scales(io["pre_quant"])
    assert torch.equal(x_prev, io["x_tm1"]) and torch.equal(x_t, io["x_t"]) and torch.equal(scale, io["scale"])
    torch.testing.assert_close(posterior, io["posterior"], atol=ATOL, rtol=0)


def test_shared_step_logits_from_its_draws(fixture):
    name, model, io = fixture
    if "forward_arg_c_indices" in io:
        c = io["ss_scale"]
    else:
        c = io["ss_x_t"] if "cond" not in io else torch.cat((io["cond"], io["ss_x_t"]), 1)
    logits = forward(model, io, io["ss_x_tm1"], c, io["ss_scale"])
    torch.testing.assert_close(logits, io["ss_logits"], atol=ATOL, rtol=0)
    loss, _ = model.compute_loss(logits, io["ss_target"], io["ss_posterior"])
    torch.testing.assert_close(loss, io["ss_loss"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_decoding(fixture, use_cache):
    _, model, io = fixture
    steps = io["x0"].shape[1]
    start = torch.zeros(2, 1, dtype=torch.long) if "forward_arg_c" in io else io["sample_arg_c"][:, :0]
    out = model.sample(start, io["sample_arg_c"], steps, sample=False, use_cache=use_cache)
    assert torch.equal(out, io["greedy_sample_raw"])
    with model.ema_scope():
        out = model.sample(start, io["sample_arg_c"], steps, sample=False, use_cache=use_cache)
    assert torch.equal(out, io["greedy_sample_ema"])


def test_multinomial_sampling_matches_the_original_rng(fixture):
    _, model, io = fixture
    cond = io.get("cond")
    with model.ema_scope():
        torch.manual_seed(int(io["multinomial_sample_torch_seed"]))
        out = model.sample_single_scale(io["x_t"], io["scale"], None, steps=io["x0"].shape[1],
                                        top_k=int(io["multinomial_sample_top_k"]), cond=cond)
    assert torch.equal(out, io["multinomial_sample_ema"])


def test_decode_to_img(fixture):
    _, model, io = fixture
    images = model.decode_to_img(io["decode_tokens"], tuple(io["decode_zshape"].tolist()))
    torch.testing.assert_close(images, io["decoded_img"], atol=ATOL, rtol=0)


def test_schedule_attributes(fixture):
    _, model, _ = fixture
    betas = torch.tensor([0.0, 1 / 3, 1 / 2, 1.0])  # geometric, T = 3
    torch.testing.assert_close(model.temperature_range, betas)
    torch.testing.assert_close(model.alphacum, torch.cumprod(1 - betas, 0))
    assert model.num_codes == 48 and model.first_stage_model.training is False
