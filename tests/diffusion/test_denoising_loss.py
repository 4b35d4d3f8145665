"""The hard/soft training loss, pinned to the original compute_loss."""

import json
import math

import pytest
import torch
from einops import rearrange

from imagebart.diffusion.losses import bits_per_token, denoising_loss

CHECKPOINTS = ["xtransformer", "residual_scaled_xtransformer", "decoder_only_gpt", "class_conditional_xtransformer"]


def close(a, b, atol=1e-5):
    return abs(float(a) - float(b)) <= atol


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_losses_match_the_original(reference_dir, name):
    io = torch.load(reference_dir / "checkpoints" / name / "io.pt")
    alpha = float(io["model_alpha"])
    for prefix, logits, target, posterior in [
        ("", io["logits"], io["target"], io["posterior"]),
        ("ss_", io["ss_logits"], io["ss_target"], io["ss_posterior"]),
    ]:
        posterior = rearrange(posterior, "b k h w -> b (h w) k")
        loss, logs = denoising_loss(logits, target, posterior, alpha)
        assert close(loss, io[f"{prefix}loss"])
        assert close(logs["loss_hard"], io[f"{prefix}loss_hard"]) and close(logs["loss_soft"], io[f"{prefix}loss_soft"])
    posterior = rearrange(io["posterior"], "b k h w -> b (h w) k")
    for a in (0.0, 0.5, 1.0):
        assert close(denoising_loss(io["logits"], io["target"], posterior, a)[0], io[f"loss_alpha_{a}"]), a
    loss, logs = denoising_loss(io["logits_ema"], io["target"], posterior, alpha)
    assert close(loss, io["loss_ema"]) and close(logs["loss_hard"], io["loss_hard_ema"])
    assert close(logs["loss_soft"], io["loss_soft_ema"])


def test_losses_match_reference_k7(reference_dir):
    ref = json.loads((reference_dir / "posterior_loss.json").read_text())
    logits = torch.tensor(ref["logits"])
    for t, step in ref["per_scale"].items():
        posterior = torch.tensor(step["posterior_float32"])
        for alpha, expected in step["loss"].items():
            loss, logs = denoising_loss(logits, torch.tensor(step["x_tm1"]), posterior, float(alpha))
            assert close(loss, expected["loss"], 1e-6), (t, alpha)
            assert close(logs["loss_hard"], expected["loss_hard"], 1e-6)
            assert close(logs["loss_soft"], expected["loss_soft"], 1e-6)


def test_loss_properties():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, generator=g, requires_grad=True)
    target = torch.randint(0, 6, (2, 5), generator=g)
    onehot = torch.nn.functional.one_hot(target, 6).float()
    # a one-hot posterior (zeros included) makes the KL equal the cross entropy
    loss, logs = denoising_loss(logits, target, onehot, 0.5)
    assert torch.isfinite(loss) and torch.allclose(logs["loss_soft"], logs["loss_hard"], atol=1e-6)
    loss.backward()
    assert logits.grad is not None and not logs["loss_hard"].requires_grad
    # the KL vanishes when the model predicts the posterior
    posterior = torch.softmax(torch.randn(2, 5, 6, generator=g), -1)
    loss, logs = denoising_loss(posterior.log(), target, posterior, 1.0)
    assert abs(loss.item()) < 1e-6 and logs["loss_hard"] > 0


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_bad_alpha_raises(alpha):
    with pytest.raises(ValueError, match="alpha"):
        denoising_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, 3) / 3, alpha)


def test_layout_mismatch_raises():
    with pytest.raises(ValueError, match=r"posterior \(B, L, K\)"):
        denoising_loss(torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 3, 2, 2) / 3, 0.5)


def test_bits_per_token():
    assert bits_per_token(math.log(2)) == pytest.approx(1.0)
    assert torch.allclose(bits_per_token(torch.tensor([math.log(256)])), torch.tensor([8.0]))
