"""minGPT: original parameter names, SDPA attention with the original mask, KV cache."""

import pytest
import torch

from imagebart.modules.transformer.mingpt import GPT

K, L = 11, 6


def build(n_cond=0, **extra):
    torch.manual_seed(0)
    n_unmasked = extra.pop("n_unmasked", 0)
    net = GPT(vocab_size=K, block_size=n_cond + L, n_layer=2, n_head=2, n_embd=16,
              n_unmasked=n_unmasked, **extra)
    with torch.no_grad():  # non-zero positions so position handling is tested
        net.pos_emb.normal_()
    return net.eval()


def sequence(n_cond=0, b=3, seed=1, cond_vocab=K):
    """[T, (cond), x_prev] minus its last token, as the decoder-only denoiser feeds it."""
    g = torch.Generator().manual_seed(seed)
    cond = torch.randint(0, cond_vocab, (b, n_cond), generator=g)
    c = torch.cat((torch.full((b, 1), 3), cond), 1)  # [T, (cond)]
    x_prev = torch.randint(0, K, (b, L), generator=g)
    return torch.cat((c, x_prev), 1)[:, :-1], c.shape[1]


def test_parameter_names_are_minGPTs():
    """The names an original checkpoint carries (so it loads with strict=True)."""
    net = GPT(vocab_size=K, block_size=4, n_layer=1, n_head=2, n_embd=8)
    block = ["ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn.mask",
             "attn.key.weight", "attn.key.bias", "attn.query.weight", "attn.query.bias",
             "attn.value.weight", "attn.value.bias", "attn.proj.weight", "attn.proj.bias",
             "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    expected = ["pos_emb", "tok_emb.weight", *[f"blocks.0.{k}" for k in block],
                "ln_f.weight", "ln_f.bias", "head.weight"]
    assert list(net.state_dict()) == expected
    assert net.head.bias is None


def test_forward_returns_logits_and_loss():
    net = build()
    idx, _ = sequence()
    logits, loss = net(idx)
    assert logits.shape == (3, L, K) and loss is None
    targets = torch.randint(0, K, (3, L))
    _, loss = net(idx, targets=targets)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, K), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="block_size"):
        net(torch.zeros(1, L + 1, dtype=torch.long))


def test_attention_is_causal_and_unmasked_prefix_is_bidirectional():
    idx, _ = sequence(n_cond=1)
    changed = idx.clone()
    changed[:, 1] = (changed[:, 1] + 1) % K  # the class token
    causal = build(n_cond=1)
    a, b = causal(idx)[0], causal(changed)[0]
    torch.testing.assert_close(a[:, 0], b[:, 0])  # position 0 cannot see position 1
    assert not torch.allclose(a[:, 1:], b[:, 1:])
    prefix = build(n_cond=1, n_unmasked=2)
    a, b = prefix(idx)[0], prefix(changed)[0]
    assert not torch.allclose(a[:, 0], b[:, 0])  # n_unmasked: the prefix sees itself


def test_input_vocab_size_allows_class_tokens_beyond_codes():
    net = build(n_cond=1, input_vocab_size=20)
    idx, _ = sequence(n_cond=1, cond_vocab=20)
    assert net(idx)[0].shape == (3, L + 1, K)


@pytest.mark.parametrize("n_cond,n_unmasked", [(0, 0), (1, 0), (1, 2)])
def test_forward_with_past_equals_forward(n_cond, n_unmasked):
    net = build(n_cond=n_cond, n_unmasked=n_unmasked)
    idx, c_len = sequence(n_cond)
    full, _ = net(idx)  # (b, n, K)
    logits, _, past = net.forward_with_past(idx[:, :c_len])  # the whole conditioning prefix
    torch.testing.assert_close(logits, full[:, :c_len], atol=1e-5, rtol=0)
    presents = [past]
    for i in range(c_len, idx.shape[1]):
        # the original's sampler passes the list of presents and the number of cached positions
        logits, _, present = net.forward_with_past(idx[:, i:i + 1], past=presents, past_length=i)
        assert present.shape == (2, 2, 3, 2, 1, 8)  # (n_layer, 2, b, heads, new, head width)
        torch.testing.assert_close(logits[:, 0], full[:, i], atol=1e-5, rtol=0)
        presents.append(present)


def test_forward_with_past_several_tokens_and_checks():
    net = build(n_cond=1, n_unmasked=2)
    idx, _ = sequence(1)
    full, _ = net(idx)
    a, _, past = net.forward_with_past(idx[:, :3])
    b, _, _ = net.forward_with_past(idx[:, 3:], past=past)
    torch.testing.assert_close(torch.cat((a, b), 1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="past_length"):
        net.forward_with_past(idx[:, 3:4], past=past, past_length=5)
    _, _, short = net.forward_with_past(idx[:, :1])
    with pytest.raises(ValueError, match="n_unmasked"):
        net.forward_with_past(idx[:, 1:2], past=short)


def test_prepended_embeddings():
    net = build(n_cond=1)
    idx, _ = sequence(1)
    emb = net.tok_emb(idx[:, :2])
    torch.testing.assert_close(net(idx[:, 2:], embeddings=emb)[0], net(idx)[0])
