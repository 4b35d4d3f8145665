"""Padding in a condition (e.g. caption tokens) is invisible: masked positions change nothing, cached or not."""

import pytest
import torch

from tiny_networks import tiny_network

from imagebart.modules.autoregressive import sample_tokens

K, L, C, V = 12, 6, 9, 20  # codes, tokens per image, condition length, input vocabulary


def build(kind):
    return tiny_network(kind, K, L, C, V)


def condition_and_mask(b=3):
    g = torch.Generator().manual_seed(1)
    condition = torch.randint(0, V, (b, C), generator=g)
    mask = torch.ones(b, C, dtype=torch.bool)
    mask[0, 1:5] = False  # [t, pad…, tokens…]: rows with 5, 7 and 9 visible tokens
    mask[1, 1:3] = False
    return condition, mask


@pytest.mark.parametrize("kind", ["xtransformer", "gpt"])
def test_masked_positions_change_nothing(kind):
    net = build(kind)
    condition, mask = condition_and_mask()
    x_prev = torch.randint(0, K, (3, L), generator=torch.Generator().manual_seed(2))
    other = torch.where(mask, condition, (condition + 5) % V)  # different tokens where masked
    logits = net.teacher_forced(condition, x_prev, condition_mask=mask)
    assert torch.allclose(logits, net.teacher_forced(other, x_prev, condition_mask=mask), atol=1e-5)
    unmasked = net.teacher_forced(other, x_prev)
    assert not torch.allclose(logits[:2], unmasked[:2], atol=1e-3)  # without the mask they matter
    assert torch.allclose(logits[2], unmasked[2], atol=1e-5)  # a row without padding is untouched


@pytest.mark.parametrize("kind", ["xtransformer", "gpt"])
def test_cached_equals_uncached_with_masks(kind):
    net = build(kind)
    condition, mask = condition_and_mask()
    runs = [sample_tokens(net, condition, L, condition_mask=mask, use_cache=cache, return_logits=True,
                          generator=torch.Generator().manual_seed(3)) for cache in (True, False)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)


@pytest.mark.parametrize("kind", ["xtransformer", "gpt"])
def test_guided_sampling_with_masks_per_branch(kind):
    net = build(kind)
    condition, mask = condition_and_mask()
    null = torch.zeros_like(condition)
    null_mask = torch.zeros_like(mask)
    null_mask[:, [0, -1]] = True  # only t and the null token at the end are visible
    tokens, logits = sample_tokens(net, condition, L, condition_mask=mask, uncond_condition=null,
                                   uncond_mask=null_mask, guidance_scale=2.0, return_logits=True,
                                   generator=torch.Generator().manual_seed(4))
    l_c = net.teacher_forced(condition, tokens, condition_mask=mask)
    l_u = net.teacher_forced(null, tokens, condition_mask=null_mask)
    assert torch.allclose(logits, l_u + 2.0 * (l_c - l_u), atol=1e-4)


def test_gpt_refuses_padding_at_the_end_of_its_prefix():
    net = build("gpt")
    condition, mask = condition_and_mask()
    mask[0, -1] = False
    with pytest.raises(ValueError, match="pad conditions on the left"):
        net.teacher_forced(condition, torch.zeros(3, L, dtype=torch.long), condition_mask=mask)
