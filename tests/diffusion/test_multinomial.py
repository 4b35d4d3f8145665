"""Forward process and posterior: against the original's outputs and against sampling."""

import json

import pytest
import torch
from einops import rearrange

from imagebart.diffusion.multinomial import q_posterior, q_probs, q_sample_chain, q_sample_step, q_step_probs
from imagebart.diffusion.schedule import MultinomialSchedule

CHECKPOINTS = ["xtransformer", "residual_scaled_xtransformer", "decoder_only_gpt", "class_conditional_xtransformer"]


def load_io(reference_dir, name):
    return torch.load(reference_dir / "checkpoints" / name / "io.pt")


# against the original


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_chain_reproduces_the_original_draws(reference_dir, name):
    io = load_io(reference_dir, name)
    schedule = MultinomialSchedule.from_redraw_prob("geometric", 3)
    t = int(io["scale"][0, 0])
    seed = int(io["get_scales_torch_seed"])
    torch.manual_seed(seed)  # the original seeds the global generator before get_scales
    chain = q_sample_chain(io["x0"], schedule, num_codes=48)
    assert chain.shape == (4, 2, 16)
    assert torch.equal(chain[0], io["x0"])
    assert torch.equal(chain[t - 1], io["x_tm1"]) and torch.equal(chain[t], io["x_t"])
    # an explicit generator with the same seed draws the same chain
    chain_g = q_sample_chain(io["x0"], schedule, 48, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(chain_g, chain)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_posterior_matches_the_original(reference_dir, name):
    io = load_io(reference_dir, name)
    schedule = MultinomialSchedule.from_redraw_prob("geometric", 3)
    for x0, x_t, scale, expected in [
        (io["x0"], io["x_t"], io["scale"], io["posterior"]),
        (io["ss_x0"], io["ss_x_t"], io["ss_scale"], io["ss_posterior"]),
    ]:
        posterior = q_posterior(x0, x_t, scale, schedule, num_codes=48)  # (B, L, K)
        expected = rearrange(expected, "b k h w -> b (h w) k")
        assert torch.allclose(posterior, expected, rtol=0, atol=1e-5)


def test_posterior_matches_reference_k7(reference_dir):
    ref = json.loads((reference_dir / "posterior_loss.json").read_text())
    schedule = MultinomialSchedule.from_redraw_prob("geometric", ref["n_scales"])
    assert torch.allclose(schedule.alphas_cumprod, torch.tensor(ref["alphacum"]), atol=1e-7)
    x0 = torch.tensor(ref["x0"])
    for t, step in ref["per_scale"].items():
        posterior = q_posterior(x0, torch.tensor(step["x_t"]), int(t), schedule, ref["K"])
        assert torch.allclose(posterior, torch.tensor(step["posterior_float32"]), rtol=0, atol=1e-6), t
        # (B, h, w) tokens give the original's layout after moving K forward
        grid = q_posterior(x0.view(2, 2, 3), torch.tensor(step["x_t"]).view(2, 2, 3), int(t), schedule, ref["K"])
        assert torch.equal(rearrange(grid, "b h w k -> b (h w) k"), posterior)


# properties

SCHEDULES = [("geometric", 4), (0.3, 3), ("bernoulli_FID", 5), ("ffhq_bernoulli_PSIM", 2)]


@pytest.mark.parametrize("redraw_prob, n_scales", SCHEDULES)
def test_posteriors_are_distributions(redraw_prob, n_scales):
    schedule = MultinomialSchedule.from_redraw_prob(redraw_prob, n_scales)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 11, (3, 8), generator=g)
    x_t = torch.randint(0, 11, (3, 8), generator=g)
    for t in range(1, n_scales + 1):
        posterior = q_posterior(x0, x_t, t, schedule, 11)
        assert posterior.shape == (3, 8, 11) and (posterior >= 0).all()
        assert torch.allclose(posterior.sum(-1), torch.ones(3, 8), atol=1e-6)
    for t in range(0, n_scales + 1):
        assert torch.allclose(q_probs(x0, t, schedule, 11).sum(-1), torch.ones(3, 8), atol=1e-6)


def test_posterior_ignores_x_t_when_it_is_pure_noise():
    schedule = MultinomialSchedule.from_redraw_prob("geometric", 3)  # β_3 = 1
    x0 = torch.tensor([[0, 1, 2, 3, 4]])
    for x_t in (x0, torch.tensor([[4, 4, 0, 1, 1]])):
        assert torch.allclose(q_posterior(x0, x_t, 3, schedule, 5), q_probs(x0, 2, schedule, 5), atol=1e-7)


def test_posterior_at_t1_is_the_clean_token():
    schedule = MultinomialSchedule.from_redraw_prob(0.4, 2)
    x0 = torch.tensor([[0, 1, 2]])
    posterior = q_posterior(x0, torch.tensor([[2, 1, 0]]), 1, schedule, 3)
    assert torch.equal(posterior, torch.eye(3)[None])


def test_sampled_chains_follow_the_closed_forms():
    """Frequencies of x_t given x_0, and of x_{t-1} given (x_0, x_t), over many chains."""
    K, n = 4, 40000
    schedule = MultinomialSchedule.from_redraw_prob(0.3, 3)
    x0 = torch.tensor([0, 1, 2, 3]).repeat(n, 1)  # (n, 4): n chains per clean value
    chain = q_sample_chain(x0, schedule, K, generator=torch.Generator().manual_seed(0))  # (4, n, 4)
    tol = 4 * (0.25 / n) ** 0.5  # 4 standard errors of a frequency
    for t in range(1, 4):
        freq = torch.nn.functional.one_hot(chain[t], K).float().mean(0)  # (4, K)
        assert torch.allclose(freq, q_probs(x0[:1], t, schedule, K)[0], atol=tol), t
    # Bayes: among chains with x_0 = 0 and x_2 = v, x_1 is distributed as the posterior
    t = 2
    for v in range(K):
        picked = chain[t - 1][:, 0][chain[t][:, 0] == v]
        freq = torch.bincount(picked, minlength=K).float() / picked.numel()
        expected = q_posterior(torch.tensor([[0]]), torch.tensor([[v]]), t, schedule, K)[0, 0]
        assert torch.allclose(freq, expected, atol=4 * (0.25 / picked.numel()) ** 0.5), v


def test_step_edge_cases():
    x = torch.arange(10).repeat(3, 1)
    assert torch.equal(q_sample_step(x, 0.0, 10), x)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    # β = 1 forgets x_prev entirely
    assert torch.equal(q_sample_step(x, 1.0, 10, generator=g1), q_sample_step(x.flip(-1), 1.0, 10, generator=g2))
    schedule = MultinomialSchedule.from_redraw_prob(0.2, 2)
    probs = q_step_probs(x[:, :2], 1, schedule, 10)
    assert torch.allclose(probs[0, 1], torch.full((10,), 0.02) + 0.8 * torch.eye(10)[1])
    assert q_sample_chain(x, schedule, 10, t_max=1).shape == (2, 3, 10)


def test_timestep_forms_agree_and_bad_ones_raise():
    schedule = MultinomialSchedule.from_redraw_prob("geometric", 3)
    x0, x_t = torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1, 1], [0, 3]])
    expected = q_posterior(x0, x_t, 2, schedule, 4)
    for t in (torch.tensor(2), torch.tensor([2, 2]), torch.tensor([[2], [2]])):
        assert torch.equal(q_posterior(x0, x_t, t, schedule, 4), expected)
    mixed = q_posterior(x0, x_t, torch.tensor([1, 3]), schedule, 4)
    assert torch.equal(mixed[0], q_posterior(x0, x_t, 1, schedule, 4)[0])
    assert torch.equal(mixed[1], q_posterior(x0, x_t, 3, schedule, 4)[1])
    with pytest.raises(ValueError, match=r"t must lie in 1..3"):
        q_posterior(x0, x_t, 0, schedule, 4)
    with pytest.raises(ValueError, match=r"t must lie in 0..3"):
        q_probs(x0, 4, schedule, 4)
    with pytest.raises(ValueError, match="shape"):
        q_posterior(x0, x_t, torch.tensor([1, 2, 3]), schedule, 4)
    with pytest.raises(TypeError, match="integer"):
        q_posterior(x0, x_t, torch.tensor([1.0, 2.0]), schedule, 4)
    with pytest.raises(ValueError, match="same shape"):
        q_posterior(x0, x_t[:, :1], 1, schedule, 4)
    with pytest.raises(ValueError, match="t_max"):
        q_sample_chain(x0, schedule, 4, t_max=4)
