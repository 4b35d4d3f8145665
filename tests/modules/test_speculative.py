"""Exact speculative decoding: passes that verify drafts sample what token-by-token decoding samples.

The distribution test enumerates every sequence of a tiny network (K^L of them), computes its exact
probability from teacher-forced logits, and compares it with the counts of many speculative draws by
a chi-square test; the same test must reject a sampler with the classic wrong residual rule.
"""

import itertools

import pytest
import torch

from tiny_networks import tiny_network

from imagebart.modules import autoregressive
from imagebart.modules.autoregressive import filtered_probabilities, keep_guide, sample_tokens

V = 12  # input vocabulary


def build(kind, k, length, cond=1 + 8, sharpness=0.3):
    return tiny_network(kind, k, length, cond, V, sharpness)


def chi_square_p_value(counts: torch.Tensor, expected: torch.Tensor) -> float:
    """Pearson's test; cells expected below 5 are pooled into one."""
    small = expected < 5
    observed = torch.cat((counts[~small], counts[small].sum()[None]))
    wanted = torch.cat((expected[~small], expected[small].sum()[None]))
    keep = wanted > 0
    stat = (((observed - wanted) ** 2)[keep] / wanted[keep]).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat.double() / 2))


@torch.no_grad()
def exact_distribution(net, condition, k, length, temperature, top_k):
    """P(x) for every x in {0..K-1}^L, in itertools.product order."""
    every = torch.tensor(list(itertools.product(range(k), repeat=length)))  # (K^L, L)
    logits = net.teacher_forced(condition.expand(len(every), -1), every)  # (K^L, L, K)
    probs = filtered_probabilities(logits, temperature, top_k)
    return probs.gather(-1, every[..., None])[..., 0].prod(dim=1).double()  # (K^L,)


def speculative_counts(net, condition, proposal, k, length, draws, batch, temperature, top_k, seed=0):
    generator = torch.Generator().manual_seed(seed)
    counts = torch.zeros(k ** length, dtype=torch.float64)
    place = k ** torch.arange(length - 1, -1, -1)  # the sequence's index in product order
    for _ in range(draws // batch):
        tokens = sample_tokens(net, condition.expand(batch, -1), length, temperature=temperature, top_k=top_k,
                               generator=generator, proposal=proposal.expand(batch, -1), gamma=length - 1)
        counts += torch.bincount((tokens * place).sum(1), minlength=k ** length).double()
    return counts


K, L = 4, 3  # 64 sequences


@pytest.fixture(scope="module")
def small():
    net = build("xtransformer", K, L, cond=1 + L, sharpness=0.4)  # drafts pass 56-84% of the time
    condition = torch.tensor([[1, 2, 0, 3]])  # [t, x_t]
    greedy = sample_tokens(net, condition, L, greedy=True)  # drafts that pass often: every path is taken
    return net, condition, greedy


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.7, 3)])
def test_speculative_draws_follow_the_sequential_distribution(small, temperature, top_k):
    net, condition, proposal = small
    expected = exact_distribution(net, condition, K, L, temperature, top_k)
    draws = 6000
    counts = speculative_counts(net, condition, proposal, K, L, draws, 8, temperature, top_k)
    assert chi_square_p_value(counts, expected * draws) > 1e-3


def test_rows_with_other_drafts_sample_the_same_distribution(small):
    """A batch whose rows accept different counts: rows ahead of the batch keep what they decided."""
    net, condition, greedy = small
    proposal = torch.cat([greedy, (greedy + 1) % K] * 4)  # (8, L): good and bad drafts alternate
    expected = exact_distribution(net, condition, K, L, 1.0, None)
    generator, counts = torch.Generator().manual_seed(1), torch.zeros(K ** L, dtype=torch.float64)
    place = K ** torch.arange(L - 1, -1, -1)
    stats = {}
    for _ in range(750):
        tokens = sample_tokens(net, condition.expand(8, -1), L, generator=generator, proposal=proposal,
                               gamma=L - 1, stats=stats)
        counts += torch.bincount((tokens * place).sum(1), minlength=K ** L).double()
    assert chi_square_p_value(counts, expected * 6000) > 1e-3
    assert stats["passes"] < 750 * L  # rows ahead of the batch did not cost passes of their own


def test_the_chi_square_test_catches_a_wrong_residual(small, monkeypatch):
    """Redrawing from p itself after a rejection (instead of p without the draft) favours drafts."""
    net, condition, proposal = small
    monkeypatch.setattr(autoregressive, "residual_distribution", lambda p, draft, rejected: p)
    expected = exact_distribution(net, condition, K, L, 1.0, None)
    counts = speculative_counts(net, condition, proposal, K, L, 6000, 8, 1.0, None)
    assert chi_square_p_value(counts, expected * 6000) < 1e-6


@pytest.mark.parametrize("guided", [False, True])
def test_greedy_speculative_tokens_are_the_token_by_token_ones(guided):
    k, length = 12, 10
    net = build("xtransformer", k, length, cond=1 + length)
    g = torch.Generator().manual_seed(1)
    condition = torch.randint(0, V, (3, 1 + length), generator=g)
    extra = dict(uncond_condition=torch.randint(0, V, (3, 1 + length), generator=g), guidance_scale=2.5) if guided else {}
    plain = sample_tokens(net, condition, length, greedy=True, **extra)
    for proposal in (condition[:, 1:], plain, torch.zeros_like(plain)):  # x_t, perfect and useless drafts
        for gamma in (1, 3, 9):
            stats = {}
            fast = sample_tokens(net, condition, length, greedy=True, proposal=proposal, gamma=gamma, stats=stats,
                                 **extra)
            assert torch.equal(fast, plain)
            assert stats["passes"] <= length
    stats = {}
    sample_tokens(net, condition, length, greedy=True, proposal=plain, gamma=9, stats=stats, **extra)
    assert stats["passes"] == 1 and stats["accepted"] == stats["examined"] == 3 * 9  # perfect drafts: one pass


@pytest.mark.parametrize("kind", ["xtransformer", "gpt"])
def test_verified_logits_are_the_sequential_ones(kind):
    """Every kept position's logits equal a teacher-forced pass over the tokens drawn."""
    k, length = 12, 10
    cond = 1 + length if kind == "xtransformer" else 3
    net = build(kind, k, length, cond=cond)
    g = torch.Generator().manual_seed(2)
    condition = torch.randint(0, V, (4, cond), generator=g)
    proposal = torch.randint(0, k, (4, length), generator=g)
    tokens, logits = sample_tokens(net, condition, length, proposal=proposal, gamma=4, return_logits=True,
                                   generator=g, temperature=0.8)
    assert logits.shape == (4, length, k)
    torch.testing.assert_close(logits, net.teacher_forced(condition, tokens), atol=1e-5, rtol=1e-5)


def test_known_runs_go_through_in_one_pass():
    """Editing: forced positions are certain drafts; a kept first half costs one pass, not L/2."""
    k, length, run = 12, 10, 6
    net = build("gpt", k, length, cond=2)
    g = torch.Generator().manual_seed(3)
    condition = torch.randint(0, V, (2, 2), generator=g)
    x0 = torch.randint(0, k, (2, length), generator=g)
    keep = torch.zeros(2, length, dtype=torch.bool)
    keep[:, :run] = True
    keep[0, 8] = True  # kept in one row only: drawn (as a forced token) in its own pass
    guide = keep_guide(x0, keep, k)
    kwargs = dict(guide=guide, proposal=torch.where(keep, x0, 0), certain=keep)
    stats = {}
    tokens = sample_tokens(net, condition, length, generator=torch.Generator().manual_seed(4), stats=stats, **kwargs)
    assert torch.equal(tokens[keep], x0[keep])
    assert stats["passes"] == length - run  # one pass for the run and the token after it, then one a token
    greedy = [sample_tokens(net, condition, length, greedy=True, guide=guide, **extra)
              for extra in ({}, {"proposal": kwargs["proposal"], "certain": keep})]
    assert torch.equal(*greedy)


def test_bad_arguments_are_named():
    net = build("xtransformer", 12, 4, cond=5)
    condition = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="gamma"):
        sample_tokens(net, condition, 4, proposal=torch.zeros(2, 4, dtype=torch.long), gamma=-1)
    with pytest.raises(ValueError, match=r"proposal must have shape \(B, steps\)"):
        sample_tokens(net, condition, 4, proposal=torch.zeros(2, 3, dtype=torch.long), gamma=2)
    with pytest.raises(ValueError, match="certain positions need the proposal"):
        sample_tokens(net, condition, 4, certain=torch.zeros(2, 4, dtype=torch.bool))
