"""Mask-guided editing on a tiny real chain: forcing, reconstruction, plain sampling, chain schedule."""

import pytest
import torch
from tiny_chain import IMAGE_SIZE, K, L, N_CLASSES, SIDE, T, write_chain

from imagebart.sampling.chain import ImageBARTChain
from imagebart.diffusion.multinomial import q_sample_step
from imagebart.modules.autoregressive import keep_guide
from imagebart.sampling.editing import default_chain_lengths, edit, reconstruct
from imagebart.sampling.masks import centre_window, edit_all, keep_all, latent_mask, outpaint, upper_half

B = 2
BETAS = {t: 1.0 / (T - t + 1) for t in range(1, T + 1)}  # geometric: beta_t = 1/(T-t+1)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return ImageBARTChain.from_sampling_config(write_chain(tmp_path_factory.mktemp("chain")), device="cpu")


@pytest.fixture(scope="module")
def cond_chain(tmp_path_factory):
    path = write_chain(tmp_path_factory.mktemp("cond_chain"), conditional=True)
    return ImageBARTChain.from_sampling_config(path, device="cpu")


@pytest.fixture(scope="module")
def x0(chain):
    """Clean tokens of some images (encoded once, so tests do not depend on remap's random draws)."""
    torch.manual_seed(0)
    return chain.encode(torch.rand(B, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1)  # (B, L)


def record_calls(monkeypatch, chain):
    """Wrap every scale's sample_x_prev: log (t, input, output, generator state) and call through."""
    calls = []
    for model in chain.models:
        real = model.sample_x_prev

        def wrapped(x_t, t, cond=None, _real=real, **kwargs):
            out = _real(x_t, t, cond, **kwargs)
            generator = kwargs.get("generator")
            calls.append({"t": int(t[0]), "x_in": x_t.clone(), "x_out": out.clone(),
                          "cond": cond, "guide": kwargs.get("guide"),
                          "state_after": None if generator is None else generator.get_state()})
            return out

        monkeypatch.setattr(model, "sample_x_prev", wrapped)
    return calls


# the pieces


def test_keep_guide_forces_clean_tokens_only_where_kept():
    x0 = torch.tensor([[3, 1, 4]])
    guide = keep_guide(x0, torch.tensor([[True, False, True]]), vocabulary=5)  # (1, 3, 5)
    assert guide.shape == (1, 3, 5)
    assert torch.equal(guide[0, 1], torch.zeros(5))
    for pos in (0, 2):
        assert guide[0, pos, x0[0, pos]] == 0
        assert torch.isinf(guide[0, pos]).sum() == 4


def test_guide_covers_larger_output_vocabularies():
    x0, keep = torch.tensor([[3, 1]]), torch.tensor([[True, False]])
    wide = keep_guide(x0, keep, vocabulary=7)  # (1, 2, 7) for a network predicting 7 > K codes
    assert wide.shape == (1, 2, 7)
    assert torch.isinf(wide[0, 0, 5:]).all() and torch.equal(wide[0, 1], torch.zeros(7))


def test_renoising_redraws_with_the_given_probability():
    """Editing re-noises with the forward step q_sample_step: codes first, then the decisions."""
    x = torch.zeros(4, 4096, dtype=torch.long)
    assert torch.equal(q_sample_step(x, 0.0, K, torch.Generator().manual_seed(0)), x)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, K, x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(q_sample_step(x, 1.0, K, g), codes)  # p = 1: the uniform draw itself
    changed = (q_sample_step(x, 0.5, K, torch.Generator().manual_seed(1)) != 0).float().mean()
    assert abs(changed - 0.5 * (1 - 1 / K)) < 0.02


def test_default_chain_lengths_follow_the_original_app():
    assert default_chain_lengths("geometric", 4) == [3, 3, 3, 3]
    assert default_chain_lengths("bernoulli_PSIM", 3) == [1, 5, 5]  # scale T first


# editing


@pytest.mark.parametrize("top_k, temperature, chain_length", [
    (None, 1.0, 1), (1, 0.3, [2, 1, 3]), (3, 5.0, 2),
])
def test_kept_positions_hold_x0_at_every_scale(chain, x0, top_k, temperature, chain_length):
    mask = outpaint(IMAGE_SIZE, IMAGE_SIZE, 0.5)  # keep the centre 2x2 tokens
    keep = latent_mask(mask, (SIDE, SIDE)).reshape(L).bool()
    result = edit(chain, x0, mask, top_k=top_k, temperature=temperature, chain_length=chain_length,
                  generator=chain.make_generator(0), return_intermediates=True)
    assert len(result.intermediates) == T + 1  # x_T, ..., x_0
    for x in result.intermediates:
        assert torch.equal(x[:, keep], x0[:, keep])
    assert torch.equal(result.tokens, result.intermediates[-1])
    assert torch.equal(result.mask, keep.float().expand(B, L))
    edited = torch.stack(result.intermediates)[:, :, ~keep]
    assert (edited != x0[:, ~keep]).any()  # the edited region really is generated
    assert result.images.shape == (B, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(result.images, chain.decode(result.tokens))


def test_all_keep_returns_the_reconstruction(chain):
    images = torch.rand(B, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    torch.manual_seed(3)  # remap's random codes for unknown entries: the same draws in both calls
    tokens, reconstruction = reconstruct(chain, images)
    torch.manual_seed(3)
    result = edit(chain, images, keep_all(IMAGE_SIZE, IMAGE_SIZE), chain_length=2,
                  generator=chain.make_generator(0))
    assert torch.equal(result.x0, tokens)
    assert torch.equal(result.tokens, tokens)
    assert torch.equal(result.images, reconstruction)


def test_all_edit_is_plain_sampling(chain, x0):
    sample = chain.sample(B, top_k=[4, 8, 16], temperature=0.8, generator=chain.make_generator(5))
    result = edit(chain, x0, edit_all(IMAGE_SIZE, IMAGE_SIZE), top_k=[4, 8, 16], temperature=0.8,
                  generator=chain.make_generator(5))
    assert torch.equal(result.tokens, sample.tokens)
    assert torch.equal(result.images, sample.images)


def test_image_and_token_inputs_agree(chain):
    images = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    torch.manual_seed(1)
    from_images = edit(chain, images, upper_half(IMAGE_SIZE, IMAGE_SIZE), generator=chain.make_generator(2))
    from_tokens = edit(chain, from_images.x0, upper_half(IMAGE_SIZE, IMAGE_SIZE), generator=chain.make_generator(2))
    assert torch.equal(from_images.tokens, from_tokens.tokens)


@pytest.mark.parametrize("mask", [
    latent_mask(centre_window(IMAGE_SIZE, IMAGE_SIZE, 0.5), (SIDE, SIDE)),  # (h, w) token mask
    centre_window(IMAGE_SIZE, IMAGE_SIZE, 0.5)[None, None].expand(B, 1, -1, -1),  # (B, 1, H, W)
    latent_mask(centre_window(IMAGE_SIZE, IMAGE_SIZE, 0.5), (SIDE, SIDE)).reshape(L),  # (L,)
])
def test_mask_forms_are_equivalent(chain, x0, mask):
    reference = edit(chain, x0, centre_window(IMAGE_SIZE, IMAGE_SIZE, 0.5), generator=chain.make_generator(4))
    result = edit(chain, x0, mask, generator=chain.make_generator(4))
    assert torch.equal(result.mask, reference.mask)
    assert torch.equal(result.tokens, reference.tokens)


def test_per_example_masks(chain, x0):
    masks = torch.stack([upper_half(IMAGE_SIZE, IMAGE_SIZE), keep_all(IMAGE_SIZE, IMAGE_SIZE)])  # (B, H, W)
    result = edit(chain, x0, masks, generator=chain.make_generator(0))
    assert result.mask[0].sum() == L // 2 and result.mask[1].sum() == L
    assert torch.equal(result.tokens[1], x0[1])


def test_chain_schedule_runs_the_expected_passes_and_renoises(monkeypatch, chain, x0):
    calls = record_calls(monkeypatch, chain)
    lengths = [2, 3, 1]  # sampling order: scale 3 twice, scale 2 three times, scale 1 once
    result = edit(chain, x0, upper_half(IMAGE_SIZE, IMAGE_SIZE), chain_length=lengths,
                  generator=chain.make_generator(0), return_intermediates=True)
    assert [c["t"] for c in calls] == [3, 3, 2, 2, 2, 1]
    assert torch.equal(calls[-1]["x_out"], result.tokens)
    # x_T: noise where edited, x0 where kept
    keep = result.mask.bool()
    assert torch.equal(calls[0]["x_in"][keep], x0[keep])
    # pass i of n at scale t re-noises ALL of the previous pass's output with p = (1 - i/n) * beta_t
    # (the original's order of draws: uniform codes, then the Bernoulli decisions)
    index = 0
    for t, n in zip(range(T, 0, -1), lengths):
        for i in range(n):
            call = calls[index]
            if i > 0:
                previous = calls[index - 1]
                replay = torch.Generator().set_state(previous["state_after"])
                expected = q_sample_step(previous["x_out"], (1 - i / n) * BETAS[t], K, replay)
                assert torch.equal(call["x_in"], expected)
            elif index > 0:
                assert torch.equal(call["x_in"], calls[index - 1]["x_out"])  # the next scale reads x_t as is
            index += 1
    # at scale 3 (beta = 1) the repeat redraws half of all tokens, kept ones included
    second = calls[1]["x_in"]
    assert (second[keep] != x0[keep]).any()
    assert torch.equal(calls[1]["x_out"][keep], x0[keep])  # ... and the forcing restores them


def test_progress_counts_all_passes(chain, x0):
    seen = []
    edit(chain, x0[:1], upper_half(IMAGE_SIZE, IMAGE_SIZE), chain_length=[1, 2, 1],
         progress=lambda t, step, steps: seen.append((t, step, steps)))
    at_2 = [s for s in seen if s[0] == 2]
    assert at_2[0] == (2, 0, 2 * L) and at_2[-1] == (2, 2 * L, 2 * L)
    assert all(a[1] < b[1] for a, b in zip(at_2, at_2[1:]))  # once a decoder pass, counting up
    assert len(at_2) < 2 * L + 1  # the kept half goes through in whole runs, not token by token
    assert seen[-1] == (1, L, L)


def test_class_guided_editing(monkeypatch, cond_chain):
    torch.manual_seed(0)
    x0 = cond_chain.encode(torch.rand(B, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1)
    sample = cond_chain.sample(B, class_label=[1, 7], generator=cond_chain.make_generator(3))
    result = edit(cond_chain, x0, edit_all(IMAGE_SIZE, IMAGE_SIZE), class_label=[1, 7],
                  generator=cond_chain.make_generator(3))
    assert torch.equal(result.tokens, sample.tokens)  # all-edit + label = class-conditional sampling
    calls = record_calls(monkeypatch, cond_chain)
    mask = centre_window(IMAGE_SIZE, IMAGE_SIZE, 0.5)
    result = edit(cond_chain, x0, mask, class_label=N_CLASSES - 1, generator=cond_chain.make_generator(3))
    assert all(torch.equal(c["cond"], torch.full((B, 1), N_CLASSES - 1)) for c in calls)
    keep = result.mask.bool()
    assert torch.equal(result.tokens[keep], x0[keep])
    with pytest.raises(ValueError, match="class_label"):
        edit(cond_chain, x0, mask)


@pytest.mark.parametrize("kwargs, match", [
    (dict(chain_length=0), "chain_length"),
    (dict(chain_length=[1, 2]), "chain_length"),
    (dict(top_k=[1, 2]), "top_k"),
    (dict(temperature=0.0), "temperature"),
    (dict(class_label=3), "unconditional"),
    (dict(mask=torch.ones(3, 1, IMAGE_SIZE, IMAGE_SIZE)), "3 masks for a batch of 2"),
    (dict(mask=torch.ones(5)), "1-D mask"),
    (dict(images=torch.full((B, L), K)), "x0 tokens must lie in"),
    (dict(images=torch.zeros(B, 1, IMAGE_SIZE, IMAGE_SIZE)), r"\(B, 3, H, W\)"),
])
def test_bad_arguments(chain, x0, kwargs, match):
    args = dict(images=x0, mask=upper_half(IMAGE_SIZE, IMAGE_SIZE))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        edit(chain, args.pop("images"), args.pop("mask"), **args)
