"""Encoder-decoder denoisers on x-transformers: shapes, options, residual term, KV cache."""

import pytest
import torch

from imagebart.diffusion.schedule import MultinomialSchedule
from imagebart.modules.xtransformers.x_transformer import ResidualScaledXTransformer, XTransformer

K, L, N_SCALES, N_CLASSES = 11, 6, 3, 5


def geometric_alphas(T):
    """α_0..α_T of the geometric schedule (β_t = 1/(T-t+1)); local so the test stands alone."""
    betas = torch.tensor([0.0] + [1.0 / (T - t + 1) for t in range(1, T + 1)])
    return 1.0 - betas


def tiny_params(n_cond=0, **extra):
    return dict(dim=16, enc_num_tokens=max(K, N_CLASSES), enc_depth=1, enc_heads=2,
                enc_max_seq_len=1 + n_cond + L, enc_attn_dim_head=8, dec_num_tokens=K,
                dec_depth=2, dec_heads=2, dec_max_seq_len=L, dec_attn_dim_head=8, **extra)


def build(kind, n_cond=0, legacy=False, **extra):
    torch.manual_seed(0)
    params = tiny_params(n_cond, legacy_2021=legacy, **extra)
    if kind == "residual":
        net = ResidualScaledXTransformer(scale_pos=0, n_scales=N_SCALES, xt_start=1 + n_cond,
                                         xt_size=L, **params)
        net.attach_schedule(MultinomialSchedule.from_redraw_prob("geometric", N_SCALES))
        with torch.no_grad():
            net.log_scalors.copy_(torch.tensor([0.3, -0.2, 0.1]))
    else:
        net = XTransformer(**params)
    return net.eval()


def inputs(n_cond=0, b=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(1, N_SCALES + 1, (b, 1), generator=g)
    cond = torch.randint(0, N_CLASSES, (b, n_cond), generator=g)
    x_t = torch.randint(0, K, (b, L), generator=g)
    x_prev = torch.randint(0, K, (b, L), generator=g)
    src = torch.cat((t, cond, x_t), dim=1)  # [t, (cond), x_t]
    tgt = torch.cat((torch.zeros_like(x_prev[:, :1]), x_prev[:, :-1]), dim=1)  # [sos, x_prev[:-1]]
    return src, tgt, x_t


@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize("legacy", [False, True])
def test_forward_shapes_and_sdpa_default(kind, legacy):
    net = build(kind, legacy=legacy)
    src, tgt, _ = inputs()
    logits, second = net(src, tgt)
    assert logits.shape == (3, L, K)
    assert second is None  # the original returns (logits, None)
    assert torch.isfinite(logits).all()
    # attention goes through torch's scaled_dot_product_attention unless a config says otherwise
    assert all(m.flash for m in net.modules() if type(m).__name__ == "Attend")


def test_legacy_structure_has_2021_biases():
    names = dict(build("plain", legacy=True).named_parameters())
    assert "decoder.attn_layers.final_norm.bias" in names
    assert "encoder.attn_layers.layers.0.0.0.bias" in names
    assert "decoder.attn_layers.layers.0.1.to_out.bias" in names
    assert "decoder.to_logits.bias" in names
    assert not any(k.startswith("encoder.to_logits") for k in names)
    new = dict(build("plain", legacy=False).named_parameters())
    assert not any(k.endswith(".bias") and ("norm" in k or "to_out" in k) for k in new)
    assert build("plain", legacy=True).decoder.pos_emb.scale == 1.0


def test_new_model_options_pass_through():
    net = build("plain", enc_rotary_pos_emb=True, dec_rotary_pos_emb=True, dec_ff_glu=True)
    src, tgt, _ = inputs()
    assert net(src, tgt)[0].shape == (3, L, K)
    assert net.decoder.attn_layers.rotary_pos_emb is not None


@pytest.mark.parametrize("bad", [dict(enc_not_an_option=1), dict(dec_attn_not_an_option=1),
                                 dict(depth=2), dict(wrap_decoder=True)])
def test_bad_params_raise_valueerror(bad):
    with pytest.raises(ValueError):
        XTransformer(**tiny_params(**bad))


def test_legacy_refuses_options_the_2021_copy_did_not_have():
    with pytest.raises(ValueError, match="legacy_2021"):
        XTransformer(**tiny_params(legacy_2021=True, dec_rotary_pos_emb=True))


def test_residual_term_matches_formula():
    """logits = exp(s_t)·network + log(α_t·onehot(x_t) + (1-α_t)/K), t per sample."""
    net = build("residual")
    src, tgt, x_t = inputs()
    logits, _ = net(src, tgt)
    raw = net.network_logits(src, tgt)
    t = src[:, 0]
    alphas = geometric_alphas(N_SCALES)[t].view(-1, 1, 1)
    onehot = torch.nn.functional.one_hot(x_t, K).float()
    expected = raw * torch.exp(net.log_scalors[t - 1]).view(-1, 1, 1) + torch.log(
        alphas * onehot + (1 - alphas) / K)
    torch.testing.assert_close(logits, expected)


def test_residual_needs_alphas_and_valid_scale():
    torch.manual_seed(0)
    net = ResidualScaledXTransformer(scale_pos=0, n_scales=N_SCALES, xt_start=1, xt_size=L,
                                     **tiny_params())
    src, tgt, _ = inputs()
    with pytest.raises(RuntimeError, match="attach_schedule"):
        net(src, tgt)
    net.attach_schedule(MultinomialSchedule.from_redraw_prob("geometric", N_SCALES))
    src[0, 0] = 0  # t = 0 has no reverse model
    with pytest.raises(ValueError, match="scale token"):
        net(src, tgt)
    with pytest.raises(ValueError, match="n_scales=3"):  # a schedule of another T
        net.attach_schedule(MultinomialSchedule.from_redraw_prob("geometric", 2))
    assert set(net.state_dict()) == {n for n, _ in net.named_parameters()}  # the shared schedule is never saved


@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("n_cond", [0, 1])
def test_cached_decoding_equals_full_pass(kind, legacy, n_cond):
    net = build(kind, n_cond=n_cond, legacy=legacy)
    src, tgt, _ = inputs(n_cond)
    full, _ = net(src, tgt)  # (b, L, K)
    x_prev = torch.cat((tgt[:, 1:], torch.zeros_like(tgt[:, :1])), dim=1)  # the targets tgt is shifted from
    torch.testing.assert_close(net.teacher_forced(src, x_prev), full)
    step, cache = net.decode_step(src, tgt[:, 1:1], None)  # first call: [sos]
    for i in range(L):
        if i:
            step, cache = net.decode_step(src, tgt[:, i:i + 1], cache)
        assert step.shape == (3, 1, K)
        torch.testing.assert_close(step[:, 0], full[:, i], atol=1e-5, rtol=0)
    assert cache.length == L


def test_cached_decoding_several_tokens_per_call():
    net = build("residual", n_cond=1)
    src, tgt, _ = inputs(1)
    full, _ = net(src, tgt)
    first, cache = net.decode_step(src, tgt[:, 1:2])  # [sos, x_prev_0]
    rest, cache = net.decode_step(src, tgt[:, 2:], cache)
    torch.testing.assert_close(torch.cat((first, rest), 1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="dec_max_seq_len"):
        net.decode_step(src, tgt[:, :1], cache)


def test_cached_decoding_with_rotary_new_model():
    net = build("plain", enc_rotary_pos_emb=True, dec_rotary_pos_emb=True)
    src, tgt, _ = inputs()
    full, _ = net(src, tgt)
    step, cache = net.decode_step(src, tgt[:, 1:1])
    for i in range(L):
        if i:
            step, cache = net.decode_step(src, tgt[:, i:i + 1], cache)
        torch.testing.assert_close(step[:, 0], full[:, i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("saved_legacy", [False, True])
def test_state_dict_roundtrip_and_layout_mismatch(saved_legacy):
    source = build("plain", legacy=saved_legacy)
    state = source.state_dict()
    same = build("plain", legacy=saved_legacy)
    same.load_state_dict(state, strict=True)
    src, tgt, _ = inputs()
    torch.testing.assert_close(same(src, tgt)[0], source(src, tgt)[0])
    with pytest.raises(ValueError, match="legacy_2021"):
        build("plain", legacy=not saved_legacy).load_state_dict(state)
