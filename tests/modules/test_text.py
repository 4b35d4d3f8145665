"""Captions as encoder tokens: tokenizer round trip, left padding and masks, and text-conditional denoisers."""

import pytest
import torch
from tiny_chain import CAPTION_LENGTH, CAPTIONS, CHAIN_KINDS, K, L, build_denoiser, denoiser_config, write_remap, \
    write_tokenizer

from imagebart.modules.conditioners import drop_condition
from imagebart.modules.text import TextProvider, load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def provider(tokenizer_file):
    return TextProvider(str(tokenizer_file), max_length=CAPTION_LENGTH, offset=K)


def test_round_trip_padding_and_masks(provider):
    captions = ["A red circle", "a blue square on a dark background"]
    tokens = provider.tokenize(captions)  # (2, C)
    assert tokens.shape == (2, CAPTION_LENGTH) and tokens.dtype == torch.long
    assert provider.decode(tokens) == ["a red circle", "a blue square on a dark background"]
    mask = provider.condition_mask(tokens)
    assert mask[0].tolist() == [False] * (CAPTION_LENGTH - 3) + [True] * 3  # padded on the left
    assert bool(mask[1].all()) or mask[1, -1]
    assert int(tokens[mask].min()) >= K and int(tokens.max()) < provider.vocabulary_needed()  # offset by K
    assert torch.equal(provider({"caption": captions}), tokens)
    null = provider.null_condition(2)
    assert provider.condition_mask(null).sum(1).tolist() == [1, 1] and provider.decode(null) == ["", ""]


def test_long_captions_are_cut_and_bad_input_named(provider, tmp_path):
    long = " ".join(["a red circle"] * 10)
    assert provider.tokenize([long]).shape == (1, CAPTION_LENGTH)
    with pytest.raises(TypeError, match="list of strings"):
        provider.tokenize("a red circle")
    with pytest.raises(KeyError, match="'caption'"):
        provider({"class_label": [1]})
    with pytest.raises(FileNotFoundError, match="train_tokenizer.py"):
        TextProvider(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a tokenizers JSON file"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="max_length"):
        TextProvider(str(write_tokenizer(tmp_path)), max_length=1)


def test_unknown_words_and_special_ids(tmp_path):
    tokenizer = train_tokenizer(list(CAPTIONS), vocab_size=60)
    assert [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[NULL]")] == [0, 1, 2]


def test_caption_dropout_uses_the_null_caption(provider):
    cond = provider.tokenize(list(CAPTIONS) * 50)
    dropped = drop_condition(cond, provider.null_condition(len(cond)), 0.3, torch.Generator().manual_seed(0))
    is_null = (dropped == provider.null_condition(len(cond))).all(1)
    assert 0.24 < is_null.float().mean().item() < 0.36
    assert torch.equal(dropped[~is_null], cond[~is_null])


@pytest.fixture(scope="module")
def text_denoisers(tmp_path_factory, tokenizer_file):
    remap = write_remap(tmp_path_factory.mktemp("remap"))
    return {kind: (build_denoiser(denoiser_config(t, kind, remap, cond_drop_prob=0.1, tokenizer=tokenizer_file),
                                  seed=t), t) for t, kind in enumerate(CHAIN_KINDS, start=1)}


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_one_training_step_with_captions(text_denoisers, kind):
    model, _ = text_denoisers[kind]
    model.train()
    batch = {"image": torch.rand(6, 3, 16, 16) * 2 - 1, "caption": list(CAPTIONS)}
    loss, _ = model.shared_step(batch)
    loss.backward()
    grads = [p.grad for p in model.transformer.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()
    model.eval()


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_cached_equals_uncached_with_captions_and_guidance(text_denoisers, kind):
    model, t = text_denoisers[kind]
    cond = model.conditioner.tokenize(list(CAPTIONS[:3]))
    x_t = torch.randint(0, K, (3, L), generator=torch.Generator().manual_seed(1))
    t_batch = torch.full((3,), t)
    for scale in (1.0, 2.5):
        runs = [model.sample_x_prev(x_t, t_batch, cond, guidance_scale=scale, use_cache=cache, gamma=0,
                                    generator=torch.Generator().manual_seed(2)) for cache in (True, False)]
        assert torch.equal(*runs)


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_caption_padding_is_invisible_to_the_denoiser(text_denoisers, kind):
    model, t = text_denoisers[kind]
    cond = model.conditioner.tokenize(["a red circle", "a green cross"])
    other = torch.where(model.conditioner.condition_mask(cond), cond, torch.full_like(cond, K + 5))
    x_t = torch.randint(0, K, (2, L), generator=torch.Generator().manual_seed(3))
    x_prev = torch.randint(0, K, (2, L), generator=torch.Generator().manual_seed(4))
    t_batch = torch.full((2,), t)
    mask = model.network_mask(cond)  # (2, 1 + C [+ L]): False at the caption's padding
    assert mask.shape[1] == model.network_condition(x_t, t_batch, cond).shape[1]
    logits = [model.transformer.teacher_forced(model.network_condition(x_t, t_batch, c), x_prev, condition_mask=mask)
              for c in (cond, other)]
    assert torch.allclose(*logits, atol=1e-5)


def test_text_config_checks(tmp_path, tokenizer_file):
    remap = write_remap(tmp_path)
    config = denoiser_config(1, "plain", remap, tokenizer=tokenizer_file)
    config["model"]["params"]["transformer_config"]["params"]["enc_num_tokens"] = K + 3
    with pytest.raises(ValueError, match="enc_num_tokens"):
        build_denoiser(config)
    config = denoiser_config(1, "plain", remap, tokenizer=tokenizer_file)
    config["model"]["params"]["conditioner_config"]["params"]["max_length"] = CAPTION_LENGTH + 4
    with pytest.raises(ValueError, match="enc_max_seq_len"):
        build_denoiser(config)
    assert "tokenizer_sha256" in build_denoiser(denoiser_config(1, "plain", remap, tokenizer=tokenizer_file)).hparams_record()
