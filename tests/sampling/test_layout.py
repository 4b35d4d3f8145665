"""Weight layout for CPU decoding: the strides change, nothing a caller sees does."""

import pytest
import torch

from tiny_chain import L, write_chain

from imagebart.modules.ema import LitEma
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.layout import decoding_layout, set_weight_layout, weight_layout
from imagebart.modules.transformer.mingpt import GPT


def tiny_gpt() -> GPT:
    return GPT(vocab_size=16, block_size=12, n_layer=2, n_head=2, n_embd=8)


def test_restriding_keeps_values_shapes_state_dict_and_in_place_updates():
    net = tiny_gpt()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    idx = torch.randint(0, 16, (2, 9), generator=torch.Generator().manual_seed(0))
    logits = net(idx)[0]
    assert weight_layout(net) == "row"
    set_weight_layout(net, "column")
    assert weight_layout(net) == "column"
    weight = net.blocks[0].attn.query.weight
    assert weight.shape == before["blocks.0.attn.query.weight"].shape and weight.stride() == (1, weight.shape[0])
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(net(idx)[0], logits, rtol=1e-5, atol=1e-5)
    # in-place writers keep the layout: load_state_dict and the EMA's copy_to
    net.load_state_dict({k: torch.zeros_like(v) if k.endswith("query.weight") else v for k, v in before.items()})
    assert weight_layout(net) == "column" and not weight.any()
    ema = LitEma(tiny_gpt())
    ema.copy_to(net)
    assert weight_layout(net) == "column" and weight.any()
    set_weight_layout(net, "row")
    assert weight_layout(net) == "row" and weight_layout(net.blocks[0]) == "row"


def test_bad_layout_is_named():
    with pytest.raises(ValueError, match="layout must be one of"):
        set_weight_layout(tiny_gpt(), "diagonal")


def test_cpu_chains_decode_column_major_and_draw_what_row_major_draws(tmp_path):
    chain = ImageBARTChain.from_sampling_config(write_chain(tmp_path), device="cpu")
    assert decoding_layout(torch.device("cpu")) == "column" and decoding_layout(torch.device("cuda")) == "row"
    assert all(weight_layout(model.transformer) == "column" for model in chain.models)
    column = chain.sample(4, generator=chain.make_generator(0), top_k=1).tokens
    for model in chain.models:
        set_weight_layout(model.transformer, "row")
    row = chain.sample(4, generator=chain.make_generator(0), top_k=1).tokens
    assert column.shape == (4, L) and torch.equal(column, row)  # greedy: rounding cannot flip an argmax here
