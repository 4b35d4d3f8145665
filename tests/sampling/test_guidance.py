"""Classifier-free guidance: null-token dropout in training, guided sampling in one 2B batch."""

import pytest
import torch
from tiny_chain import CHAIN_KINDS, K, L, N_CLASSES, T, build_denoiser, denoiser_config, write_chain, write_remap

from imagebart.modules.autoregressive import guided_logits, sample_tokens
from imagebart.modules.conditioners import ClassProvider, drop_condition
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.editing import edit


@pytest.fixture(scope="module")
def remap(tmp_path_factory):
    return write_remap(tmp_path_factory.mktemp("remap"))


@pytest.fixture(scope="module")
def guided_chain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guided_chain")
    return ImageBARTChain.from_sampling_config(write_chain(folder, conditional=True, cond_drop_prob=0.1),
                                               device="cpu")


@pytest.fixture(scope="module")
def guided_denoisers(remap):
    """One guided denoiser per network kind: (model, t)."""
    models = {}
    for t, kind in enumerate(CHAIN_KINDS, start=1):
        models[kind] = (build_denoiser(denoiser_config(t, kind, remap, True, cond_drop_prob=0.1), seed=t), t)
    return models


def conditions(model, t, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randint(0, K, (b, L), generator=g)  # (B, L)
    t_batch = torch.full((b,), t)
    labels = torch.randint(0, N_CLASSES, (b, 1), generator=g)  # (B, 1)
    cond = model.network_condition(x_t, t_batch, labels)
    null = model.network_condition(x_t, t_batch, model.conditioner.null_condition(b))
    return x_t, t_batch, labels, cond, null


# training: the null token


def test_drop_condition_rate_and_rows():
    cond = torch.arange(20000)[:, None].repeat(1, 3)  # (B, 3), no row equals the null row
    null = torch.full_like(cond, -1)
    dropped = drop_condition(cond, null, 0.25, torch.Generator().manual_seed(0))
    is_null = (dropped == -1).all(dim=1)
    assert ((dropped == -1).any(dim=1) == is_null).all()  # whole rows are replaced, never parts
    assert torch.equal(dropped[~is_null], cond[~is_null])
    assert abs(is_null.float().mean().item() - 0.25) < 0.01  # 4.6 standard deviations at B = 20000
    assert torch.equal(drop_condition(cond, null, 0.0), cond)


def test_training_feeds_the_null_token_at_the_drop_rate(guided_denoisers):
    model, t = guided_denoisers["residual"]
    seen = []
    real = model.transformer.teacher_forced

    def recording(condition, x_prev, **kwargs):
        seen.append(condition[:, 1].clone())  # [t, class, x_t]: the class token
        return real(condition, x_prev, **kwargs)

    model.transformer.teacher_forced = recording
    try:
        images = torch.rand(400, 3, 16, 16) * 2 - 1
        labels = torch.arange(400) % N_CLASSES
        torch.manual_seed(0)
        model.train()
        model.shared_step({"image": images, "class_label": labels})
        model.eval()
        model.shared_step({"image": images, "class_label": labels})
    finally:
        del model.transformer.teacher_forced
    train, val = seen
    dropped = train == N_CLASSES
    assert torch.equal(train[~dropped], labels[~dropped])
    assert 0.06 < dropped.float().mean().item() < 0.15  # p = 0.1, B = 400: 3.3 standard deviations
    assert torch.equal(val, labels)  # validation measures the conditional model


def test_record_and_null_token(guided_denoisers):
    model, _ = guided_denoisers["plain"]
    assert model.hparams_record()["cond_drop_prob"] == 0.1
    assert model.conditioner.null_token == N_CLASSES
    assert model.conditioner.null_condition(2).tolist() == [[N_CLASSES], [N_CLASSES]]


def vocabulary_full_of_classes(params):
    """K classes in a vocabulary of K ids: the null token K has no room."""
    params["conditioner_config"]["params"]["n_classes"] = K
    params["transformer_config"]["params"]["enc_num_tokens"] = K


@pytest.mark.parametrize("change,match", [
    (lambda p: p.update(cond_drop_prob=1.0), r"cond_drop_prob .* \[0, 1\)"),
    (lambda p: p.update(cond_drop_prob="often"), r"cond_drop_prob .* \[0, 1\)"),
    (lambda p: p.pop("conditioner_config"), "needs a conditioner with a null condition"),
    (vocabulary_full_of_classes, "enc_num_tokens=40 must be >= .*classes=41.*null token"),
])
def test_bad_dropout_configs(remap, change, match):
    config = denoiser_config(1, "plain", remap, True, cond_drop_prob=0.1)
    change(config["model"]["params"])
    with pytest.raises(ValueError, match=match):
        build_denoiser(config)


def test_null_token_needs_n_classes():
    with pytest.raises(ValueError, match="n_classes"):
        ClassProvider(key="class_label").null_condition(2)


# sampling: one network, two branches


def test_guided_logits_formula():
    c, u = torch.randn(4, K), torch.randn(4, K)
    assert torch.equal(guided_logits(c, u, 1.0), c)
    assert torch.allclose(guided_logits(c, u, 0.0), u, atol=1e-6)
    assert torch.allclose(guided_logits(c, u, 3.0), u + 3.0 * (c - u), atol=1e-5)


@pytest.mark.parametrize("kind", CHAIN_KINDS)
@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
def test_guided_step_logits_are_the_mix_of_both_branches(guided_denoisers, kind, scale):
    """At every position the sampler's logits equal l_u + s (l_c - l_u) of teacher-forced runs."""
    model, t = guided_denoisers[kind]
    _, _, _, cond, null = conditions(model, t)
    tokens, logits = sample_tokens(model.transformer, cond, L, uncond_condition=null, guidance_scale=scale,
                                   generator=torch.Generator().manual_seed(1), return_logits=True)
    l_c = model.transformer.teacher_forced(cond, tokens)  # (B, L, K)
    l_u = model.transformer.teacher_forced(null, tokens)
    assert torch.allclose(logits, l_u + scale * (l_c - l_u), atol=1e-4)


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_scale_one_in_the_two_branch_batch_gives_the_conditional_tokens(guided_denoisers, kind):
    model, t = guided_denoisers[kind]
    _, _, _, cond, null = conditions(model, t)
    plain = sample_tokens(model.transformer, cond, L, generator=torch.Generator().manual_seed(2))
    both = sample_tokens(model.transformer, cond, L, uncond_condition=null, guidance_scale=1.0,
                         generator=torch.Generator().manual_seed(2))
    assert torch.equal(plain, both)


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_cached_equals_uncached_with_guidance(guided_denoisers, kind):
    model, t = guided_denoisers[kind]
    x_t, t_batch, labels, _, _ = conditions(model, t)
    runs = [model.sample_x_prev(x_t, t_batch, labels, guidance_scale=3.0, use_cache=cache, gamma=0,
                                generator=torch.Generator().manual_seed(3)) for cache in (True, False)]
    assert torch.equal(*runs)


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_scale_zero_is_the_unconditional_branch(guided_denoisers, kind):
    model, t = guided_denoisers[kind]
    x_t, t_batch, labels, _, _ = conditions(model, t)
    null = model.conditioner.null_condition(len(x_t))
    zero = model.sample_x_prev(x_t, t_batch, labels, guidance_scale=0.0, generator=torch.Generator().manual_seed(4))
    uncond = model.sample_x_prev(x_t, t_batch, null, generator=torch.Generator().manual_seed(4))
    assert torch.equal(zero, uncond)


def test_guidance_changes_samples_and_strengthens_the_class(guided_denoisers):
    """A larger s moves probability towards what the class adds over the unconditional model."""
    model, t = guided_denoisers["plain"]
    _, _, _, cond, null = conditions(model, t)
    tokens = sample_tokens(model.transformer, cond, L, generator=torch.Generator().manual_seed(5))
    l_c = model.transformer.teacher_forced(cond, tokens).log_softmax(-1)
    l_u = model.transformer.teacher_forced(null, tokens).log_softmax(-1)
    favoured = (l_c - l_u).argmax(-1)  # (B, L) the code the class raises most
    prob = [guided_logits(l_c, l_u, s).softmax(-1).gather(-1, favoured[..., None]).mean() for s in (1.0, 3.0)]
    assert prob[1] > prob[0]


# the chain, editing and their errors


def test_chain_guidance_one_equals_plain_and_other_scales_differ(guided_chain):
    def draw(**kwargs):
        return guided_chain.sample(2, class_label=[3, 7], generator=guided_chain.make_generator(0), **kwargs).tokens

    plain = draw()
    assert torch.equal(draw(guidance_scale=1), plain)
    assert torch.equal(draw(guidance_scale=[1.0] * T), plain)
    assert not torch.equal(draw(guidance_scale=4.0), plain)
    assert guided_chain.guidance_schedule([3, 2, 1]) == [3.0, 2.0, 1.0]


def test_guided_editing_keeps_kept_tokens(guided_chain):
    x0 = torch.randint(0, K, (2, L))
    keep = torch.zeros(2, L, dtype=torch.bool)
    keep[:, : L // 2] = True
    result = edit(guided_chain, x0, keep.float(), class_label=[1, 2], guidance_scale=[2.0, 2.0, 1.0],
                  generator=guided_chain.make_generator(0))
    assert torch.equal(result.tokens[keep], x0[keep])


def test_guidance_errors(tmp_path, guided_chain):
    plain = ImageBARTChain.from_sampling_config(write_chain(tmp_path / "plain"), device="cpu")
    with pytest.raises(ValueError, match="unconditional: guidance_scale needs a class-conditional chain"):
        plain.sample(1, guidance_scale=2.0)
    no_dropout = ImageBARTChain.from_sampling_config(write_chain(tmp_path / "no_dropout", conditional=True),
                                                     device="cpu")
    with pytest.raises(ValueError, match=r"scale 3 .* trained without model.params.cond_drop_prob"):
        no_dropout.sample(1, class_label=0, guidance_scale=[2.0, 1.0, 1.0])
    assert no_dropout.sample(1, class_label=0, guidance_scale=1.0).tokens.shape == (1, L)
    with pytest.raises(ValueError, match="numbers >= 0"):
        guided_chain.sample(1, class_label=0, guidance_scale=-1.0)
    with pytest.raises(ValueError, match=f"list of {T} values"):
        guided_chain.sample(1, class_label=0, guidance_scale=[2.0, 2.0])
