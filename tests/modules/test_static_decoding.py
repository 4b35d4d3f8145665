"""Static decode steps (positions as a tensor, whole-buffer attention) compute what the eager cached steps
compute, and torch.compile captures one graph per block size, not one per position."""

import pytest
import torch

from tiny_networks import tiny_network

from imagebart.modules import autoregressive, static_decoding

CODES, LENGTH, COND, VOCABULARY = 7, 9, 4, 12


def network_and_condition(kind: str):
    net = tiny_network(kind, CODES, LENGTH, COND, VOCABULARY)
    generator = torch.Generator().manual_seed(3)
    condition = torch.randint(0, VOCABULARY, (3, COND), generator=generator)
    mask = torch.ones(condition.shape, dtype=torch.bool)
    mask[1, :2] = False  # padding on the left of one row (the GPT's prefix must end unpadded)
    return net, condition, mask


def sample(net, condition, mask, gamma: int):
    proposal = torch.randint(0, CODES, (len(condition), LENGTH), generator=torch.Generator().manual_seed(5))
    return autoregressive.sample_tokens(net, condition, LENGTH, condition_mask=mask, return_logits=True,
                                        proposal=proposal if gamma else None, gamma=gamma,
                                        generator=torch.Generator().manual_seed(4))


def test_the_mask_shows_each_query_the_keys_up_to_its_position():
    mask = static_decoding.visible(torch.tensor([2, 3]), 5)
    assert mask.tolist() == [[True, True, True, False, False], [True, True, True, True, False]]
    key_mask = torch.tensor([[False, True, True, True, True]])
    assert static_decoding.visible(torch.tensor([2]), 5, key_mask)[0, 0].tolist() == [[False, True, True, False, False]]


def test_writing_puts_keys_and_values_at_the_positions():
    kv = torch.zeros(2, 1, 2, 6, 3)
    k, v = torch.ones(1, 2, 2, 3), 2 * torch.ones(1, 2, 2, 3)
    static_decoding.write(kv, torch.stack((k, v)), torch.tensor([3, 4]))
    assert kv[0, :, :, 3:5].eq(1).all() and kv[1, :, :, 3:5].eq(2).all()
    assert kv[:, :, :, :3].eq(0).all() and kv[:, :, :, 5:].eq(0).all()


@pytest.mark.parametrize("gamma", [0, 3])
@pytest.mark.parametrize("kind", ["gpt", "xt"])
def test_static_steps_sample_what_eager_steps_sample(kind, gamma, monkeypatch):
    """Uncompiled (no size ever recurs often enough), so only the positions-as-a-tensor maths is under test,
    with rewinds (gamma 3) and a padded condition."""
    net, condition, mask = network_and_condition(kind)
    eager_tokens, eager_logits = sample(net, condition, mask, gamma)
    monkeypatch.setattr(static_decoding, "COMPILE_AFTER", 10**9)
    net.compile_decoding = True
    tokens, logits = sample(net, condition, mask, gamma)
    assert torch.equal(tokens, eager_tokens)
    torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["gpt", "xt"])
def test_compiled_steps_sample_what_eager_steps_sample_with_one_graph(kind, monkeypatch):
    from torch._dynamo.utils import counters

    net, condition, mask = network_and_condition(kind)
    eager_tokens, eager_logits = sample(net, condition, mask, 0)
    monkeypatch.setattr(static_decoding, "COMPILE_AFTER", 1)
    net.compile_decoding = True
    graphs = counters["stats"]["unique_graphs"]
    tokens, logits = sample(net, condition, mask, 0)
    assert torch.equal(tokens, eager_tokens)
    torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=0)
    assert net._compiled_steps.sizes == {1}
    assert counters["stats"]["unique_graphs"] - graphs == 1  # every position ran the same graph
