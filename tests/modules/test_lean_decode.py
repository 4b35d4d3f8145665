"""Lean decoding (static caches over x-transformers' modules) gives x-transformers' own logits."""

import logging

import pytest
import torch
from x_transformers.x_transformers import FeedForward

from test_x_transformer import L, build, inputs

from imagebart.modules import autoregressive
from imagebart.modules.xtransformers import x_transformer
from imagebart.modules.xtransformers.lean_decode import LeanDecoderState, fused_projection, supports
from imagebart.modules.xtransformers.x_transformer import EncoderDecoderCache
from imagebart.sampling.layout import set_weight_layout


def decode_in_blocks(net, src, tgt, blocks, mask=None):
    """Logits of tgt's positions fed in blocks of the given sizes, with the cache."""
    logits, cache, pos = [], None, 0
    for size in blocks:
        new = tgt[:, 1 + pos - 1:pos + size] if pos else tgt[:, 1:size]  # the first call prepends sos itself
        step, cache = net.decode_step(src, new, cache, condition_mask=mask)
        logits.append(step)
        pos += size
    return torch.cat(logits, dim=1), cache


@pytest.mark.parametrize("layout", ["row", "column"])
@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize("legacy", [False, True])
def test_lean_steps_equal_the_full_pass(kind, legacy, layout):
    net = set_weight_layout(build(kind, legacy=legacy), layout)
    src, tgt, _ = inputs()
    mask = torch.ones(src.shape, dtype=torch.bool)
    mask[0, 2:4] = False  # padding in one row's condition
    full, _ = net(src, tgt, src_mask=mask)
    assert supports(net.decoder)
    lean, cache = decode_in_blocks(net, src, tgt, [1, 2, 1, 2], mask)
    assert isinstance(cache, LeanDecoderState) and net._lean_verified is True
    torch.testing.assert_close(lean, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("options, direct", [
    ({}, {"norm": True, "feedforward": True, "residual": True}),
    ({"dec_ff_glu": True}, {"norm": True, "feedforward": False, "residual": True}),
    ({"dec_ff_post_act_ln": True}, {"norm": True, "feedforward": False, "residual": True}),
    ({"dec_scale_residual": True}, {"norm": True, "feedforward": True, "residual": False}),
    ({"dec_use_rmsnorm": True}, {"norm": False, "feedforward": True, "residual": True}),
])
def test_layers_run_directly_where_they_can_and_as_modules_otherwise(options, direct):
    net = build("plain", **options)
    with torch.no_grad():  # gains away from 1 and residual scales away from 1, so a skipped one shows
        for name, parameter in net.decoder.named_parameters():
            if name.endswith(("gamma", "residual_scale")):
                parameter.add_(torch.rand(parameter.shape, generator=torch.Generator().manual_seed(0)))
    src, tgt, _ = inputs()
    full, _ = net(src, tgt)
    lean, cache = decode_in_blocks(net, src, tgt, [1, 2, 1, 2])
    assert isinstance(cache, LeanDecoderState)
    torch.testing.assert_close(lean, full, atol=1e-5, rtol=0)
    _, kind, norm, block, residual = next(layer for layer in cache.layers if layer[1] == "f")
    assert (not isinstance(norm, torch.nn.Module)) == direct["norm"]
    assert (not any(isinstance(m, FeedForward) for m in block)) == direct["feedforward"]
    assert (residual is None) == direct["residual"]


def test_grouped_keys_and_values_use_x_transformers():
    net = build("plain", dec_attn_kv_heads=1)
    assert not supports(net.decoder)


def test_rewinding_and_sampling_match_the_generic_cache():
    net = build("residual")
    src, _, x_t = inputs()
    runs = []
    for lean in (True, False):
        net.lean_decoding = lean
        runs.append(autoregressive.sample_tokens(net, src, L, proposal=x_t, gamma=3, return_logits=True,
                                                 generator=torch.Generator().manual_seed(4)))
    assert torch.equal(runs[0][0], runs[1][0])
    torch.testing.assert_close(runs[0][1], runs[1][1], atol=1e-5, rtol=0)


def test_unsupported_decoders_use_x_transformers():
    net = build("plain", enc_rotary_pos_emb=True, dec_rotary_pos_emb=True)
    assert not supports(net.decoder)
    src, tgt, _ = inputs()
    _, cache = net.decode_step(src, tgt[:, 1:1])
    assert isinstance(cache, EncoderDecoderCache)


def test_a_mismatch_falls_back_with_a_warning(monkeypatch, caplog):
    net = build("plain")
    monkeypatch.setattr(x_transformer, "matches_generic", lambda generic, lean: False)
    src, tgt, _ = inputs()
    full, _ = net(src, tgt)
    with caplog.at_level(logging.WARNING):
        steps, cache = decode_in_blocks(net, src, tgt, [1, 1, 1, 1, 1, 1])
    assert isinstance(cache, EncoderDecoderCache) and net._lean_verified is False
    assert "using x-transformers' cached path" in caplog.text
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["row", "column"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_a_fused_projection_gives_the_three_products_in_the_weights_layout(layout, with_bias):
    torch.manual_seed(0)
    linears = set_weight_layout(torch.nn.ModuleList(
        [torch.nn.Linear(6, 8, bias=with_bias), torch.nn.Linear(6, 8, bias=False), torch.nn.Linear(6, 4)]), layout)
    weight, bias, sizes = fused_projection(*linears)
    assert sizes == [8, 8, 4] and weight.shape == (20, 6)
    assert weight.is_contiguous() == (layout == "row")
    x = torch.randn(2, 3, 6)
    for part, layer in zip(torch.nn.functional.linear(x, weight, bias).split(sizes, dim=-1), linears):
        torch.testing.assert_close(part, layer(x))
