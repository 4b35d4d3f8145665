"""Official-format checkpoints: key map, EMA shadows, and the original's outputs reproduced.

The fixtures in ../shared/reference/checkpoints were written by the original code; each has
the inputs and outputs (logits with raw and EMA weights, greedy samples) of its network.
"""

import pytest
import torch
from omegaconf import OmegaConf

from imagebart.modules.xtransformers.legacy import (
    XTRANSFORMER_KEY_MAP,
    convert_legacy_checkpoint,
    convert_legacy_ema_state_dict,
    convert_legacy_key,
    convert_legacy_state_dict,
    is_legacy_state_dict,
    split_checkpoint,
)
from imagebart.diffusion.schedule import MultinomialSchedule
from imagebart.modules.xtransformers.x_transformer import XTransformer
from imagebart.util import instantiate_from_config

ENC_DEC = ["xtransformer", "residual_scaled_xtransformer", "class_conditional_xtransformer"]


def geometric_alphas(T):
    """α_0..α_T of the geometric schedule (β_t = 1/(T-t+1)); local so the test stands alone."""
    betas = torch.tensor([0.0] + [1.0 / (T - t + 1) for t in range(1, T + 1)])
    return 1.0 - betas


def load_fixture(reference_dir, name):
    folder = reference_dir / "checkpoints" / name
    config = OmegaConf.load(folder / "config.yaml").model.params
    state_dict = torch.load(folder / "model.ckpt", weights_only=True)["state_dict"]
    io = torch.load(folder / "io.pt", weights_only=True)
    return config, state_dict, io


def build_network(config, legacy):
    transformer_config = OmegaConf.to_container(config.transformer_config)
    if legacy:
        transformer_config["params"]["legacy_2021"] = True
    net = instantiate_from_config(transformer_config).eval()
    if hasattr(net, "attach_schedule"):
        net.attach_schedule(MultinomialSchedule(1 - geometric_alphas(config.n_scales)))
    return net


def ema_weights(net, ema):
    """Our parameter name -> EMA tensor, from shadows already in our names."""
    return {name: ema[name.replace(".", "")] for name, _ in net.named_parameters()}


@pytest.mark.parametrize("name", ENC_DEC)
def test_encoder_decoder_reproduces_original(reference_dir, name):
    config, state_dict, io = load_fixture(reference_dir, name)
    model, ema = split_checkpoint(state_dict)
    assert is_legacy_state_dict(state_dict, prefix="transformer.")
    net = build_network(config, legacy=True)
    model = convert_legacy_state_dict(model)  # 2021 keys -> ours (imagebart.loading does this on load)
    net.load_state_dict(model, strict=True)

    # DenoisingXTransformer.forward: encoder [t, (cond), x_t], decoder [sos=0, x_{t-1}[:-1]]
    src = torch.cat((io["scale"], io["forward_arg_c"]), dim=1)
    sos = torch.zeros_like(io["x_tm1"][:, :1])
    tgt = torch.cat((sos, io["x_tm1"][:, :-1]), dim=1)
    ema_state = ema_weights(net, convert_legacy_ema_state_dict(ema, split_checkpoint(state_dict)[0].keys()))
    for weights, logits_key, sample_key in [(model, "logits", "greedy_sample_raw"),
                                            (ema_state, "logits_ema", "greedy_sample_ema")]:
        net.load_state_dict(weights, strict=True)
        with torch.no_grad():
            logits, _ = net(src, tgt)
        torch.testing.assert_close(logits, io[logits_key], atol=1e-5, rtol=0)

        # greedy decoding with the KV cache, from sos, over sample_arg_c = [t, (cond), x_t]
        src_sample = io["sample_arg_c"]
        token, cache, tokens = sos[:, :0], None, []
        for _ in range(io[sample_key].shape[1]):
            step, cache = net.decode_step(src_sample, token, cache)
            token = step[:, -1].argmax(-1, keepdim=True)
            tokens.append(token)
        assert torch.equal(torch.cat(tokens, 1), io[sample_key])


def test_gpt_reproduces_original(reference_dir):
    config, state_dict, io = load_fixture(reference_dir, "decoder_only_gpt")
    model, ema = split_checkpoint(state_dict)
    assert not is_legacy_state_dict(state_dict, prefix="transformer.")
    net = build_network(config, legacy=False)
    net.load_state_dict(model, strict=True)  # minGPT names unchanged
    ema_state = ema_weights(net, convert_legacy_ema_state_dict(ema, model.keys(), "gpt"))

    # DecoderOnlyDenoiser.forward: cat(c, x_{t-1})[:, :-1], outputs from position len(c)-1 on
    c = io["forward_arg_c_indices"]
    idx = torch.cat((c, io["x_tm1"]), dim=1)[:, :-1]
    for weights, logits_key, sample_key in [(model, "logits", "greedy_sample_raw"),
                                            (ema_state, "logits_ema", "greedy_sample_ema")]:
        net.load_state_dict(weights, strict=False)
        with torch.no_grad():
            logits, _ = net(idx)
            torch.testing.assert_close(logits[:, c.shape[1] - 1:], io[logits_key], atol=1e-5,
                                       rtol=0)
            # greedy decoding with past, starting from the conditioning sample_arg_c = [t]
            token, past, tokens = io["sample_arg_c"], [], []
            for _ in range(io[sample_key].shape[1]):
                step, _, present = net.forward_with_past(token, past=past or None)
                past.append(present)
                token = step[:, -1].argmax(-1, keepdim=True)
                tokens.append(token)
        assert torch.equal(torch.cat(tokens, 1), io[sample_key])


def test_whole_checkpoint_conversion_names_match_our_model(reference_dir):
    config, state_dict, _ = load_fixture(reference_dir, "residual_scaled_xtransformer")
    converted = convert_legacy_checkpoint(state_dict, "xtransformer")
    model, ema = split_checkpoint(converted)
    net = build_network(config, legacy=True)
    assert set(model) == set(net.state_dict())
    # EMA shadows now carry our names (dots removed), as LitEma over our network names them
    expected = {n.replace(".", "") for n, _ in net.named_parameters()} | {"decay", "num_updates"}
    assert set(ema) == expected
    assert not is_legacy_state_dict(converted, prefix="transformer.")
    # untouched entries and values
    assert torch.equal(converted["alphats"], state_dict["alphats"])
    assert torch.equal(model["encoder.token_emb.emb.weight"],
                       state_dict["transformer.encoder.token_emb.weight"])
    assert convert_legacy_checkpoint(converted, "xtransformer").keys() == converted.keys()


def test_legacy_keys_refused_without_legacy_mode(reference_dir):
    config, state_dict, _ = load_fixture(reference_dir, "xtransformer")
    model, _ = split_checkpoint(state_dict)
    net = build_network(config, legacy=False)
    with pytest.raises(ValueError, match="legacy_2021"):
        net.load_state_dict(model)


def test_key_map_examples():
    assert convert_legacy_key("decoder.token_emb.weight") == "decoder.token_emb.emb.weight"
    assert convert_legacy_key("encoder.attn_layers.layers.10.0.bias") == \
        "encoder.attn_layers.layers.10.0.0.bias"
    assert convert_legacy_key("decoder.attn_layers.layers.2.1.net.0.0.weight") == \
        "decoder.attn_layers.layers.2.1.ff.0.0.weight"
    assert convert_legacy_key("decoder.attn_layers.layers.2.1.net.2.bias") == \
        "decoder.attn_layers.layers.2.1.ff.2.bias"
    assert convert_legacy_key("encoder.norm.weight") == "encoder.attn_layers.final_norm.weight"
    assert convert_legacy_key("encoder.to_logits.bias") is None
    assert convert_legacy_key("blocks.0.attn.mask", "gpt") == "blocks.0.attn.mask"
    with pytest.raises(ValueError, match="no mapping"):
        convert_legacy_key("decoder.attn_layers.layers.0.1.rel_pos.weight")
    with pytest.raises(ValueError, match="model_kind"):
        convert_legacy_key("x", "bart")
    assert all(len(reason) > 20 for _, _, reason in XTRANSFORMER_KEY_MAP)


def test_key_map_covers_a_2021_network_of_any_depth():
    """The 2021 names of a deeper net (built from the fixture pattern) all map onto ours."""
    net = XTransformer(dim=8, enc_num_tokens=5, enc_depth=6, enc_heads=1, enc_max_seq_len=4,
                       dec_num_tokens=5, dec_depth=6, dec_heads=1, dec_max_seq_len=3,
                       legacy_2021=True)
    ours = set(net.state_dict())
    legacy = {}
    for side, n_layers, block in (("encoder", 12, ("a", "f")), ("decoder", 18, ("a", "c", "f"))):
        legacy[f"{side}.token_emb.weight"] = None
        legacy[f"{side}.pos_emb.emb.weight"] = None
        legacy[f"{side}.norm.weight"] = legacy[f"{side}.norm.bias"] = None
        legacy[f"{side}.to_logits.weight"] = legacy[f"{side}.to_logits.bias"] = None
        for i in range(n_layers):
            kind = block[i % len(block)]
            legacy[f"{side}.attn_layers.layers.{i}.0.weight"] = None
            legacy[f"{side}.attn_layers.layers.{i}.0.bias"] = None
            if kind == "f":
                for k in ("net.0.0.weight", "net.0.0.bias", "net.2.weight", "net.2.bias"):
                    legacy[f"{side}.attn_layers.layers.{i}.1.{k}"] = None
            else:
                for k in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.weight",
                          "to_out.bias"):
                    legacy[f"{side}.attn_layers.layers.{i}.1.{k}"] = None
    assert is_legacy_state_dict(legacy)
    assert set(convert_legacy_state_dict(legacy)) == ours
