"""A text-conditional chain: captions in sampling and editing, guidance, and its errors."""

import pytest
import torch
from tiny_chain import CAPTIONS, K, L, T, write_chain

from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.editing import edit


@pytest.fixture(scope="module")
def text_chain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_chain")
    return ImageBARTChain.from_sampling_config(write_chain(folder, text=True, cond_drop_prob=0.1), device="cpu")


def draw(chain, caption, seed=0, b=2, **kwargs):
    return chain.sample(b, caption=caption, generator=chain.make_generator(seed), **kwargs)


def test_captions_condition_each_image(text_chain):
    assert text_chain.is_text_conditional and not text_chain.is_conditional and text_chain.supports_guidance
    a = draw(text_chain, [CAPTIONS[0], CAPTIONS[1]], gamma=0)  # token by token: each row's draws its own
    b = draw(text_chain, [CAPTIONS[0], CAPTIONS[2]], gamma=0)
    assert a.caption == [CAPTIONS[0], CAPTIONS[1]] and a.class_label is None
    assert torch.equal(a.tokens[0], b.tokens[0]) and not torch.equal(a.tokens[1], b.tokens[1])
    same = draw(text_chain, CAPTIONS[0], gamma=0)
    assert same.caption == [CAPTIONS[0]] * 2 and torch.equal(same.tokens[0], a.tokens[0])
    assert text_chain.describe()["text_conditional"] is True


def test_guidance_with_captions(text_chain):
    plain = draw(text_chain, CAPTIONS[3]).tokens
    assert torch.equal(draw(text_chain, CAPTIONS[3], guidance_scale=1.0).tokens, plain)
    assert not torch.equal(draw(text_chain, CAPTIONS[3], guidance_scale=[4.0, 4.0, 1.0]).tokens, plain)
    cached = draw(text_chain, CAPTIONS[3], guidance_scale=3.0, gamma=0).tokens
    assert torch.equal(draw(text_chain, CAPTIONS[3], guidance_scale=3.0, use_cache=False).tokens, cached)


def test_text_guided_editing_keeps_what_the_mask_keeps(text_chain):
    x0 = torch.randint(0, K, (2, L), generator=torch.Generator().manual_seed(1))
    keep = torch.ones(2, L)
    keep[:, 5:11] = 0
    result = edit(text_chain, x0, keep, caption="a large green cross", guidance_scale=2.0,
                  generator=text_chain.make_generator(0))
    kept = keep.bool()
    assert torch.equal(result.tokens[kept], x0[kept]) and result.caption == ["a large green cross"] * 2
    other = edit(text_chain, x0, keep, caption="two small triangles", guidance_scale=2.0,
                 generator=text_chain.make_generator(0))
    assert not torch.equal(other.tokens[~kept], result.tokens[~kept])  # the caption steers the edit


@pytest.mark.parametrize("kwargs, match", [
    ({}, "text-conditional: pass caption"),
    ({"caption": ["one", "two", "three"]}, "one per image"),
    ({"caption": "  "}, "non-empty string"),
    ({"caption": "a red circle", "class_label": 1}, "class_label was given but the chain is text-conditional"),
])
def test_caption_errors(text_chain, kwargs, match):
    with pytest.raises(ValueError, match=match):
        text_chain.sample(2, **kwargs)


def test_caption_on_other_chains_is_refused(tmp_path):
    plain = ImageBARTChain.from_sampling_config(write_chain(tmp_path / "plain"), device="cpu")
    with pytest.raises(ValueError, match="not text-conditional"):
        plain.sample(1, caption="a red circle")
    assert plain.sample(1).tokens.shape == (1, L) and T == plain.n_scales
