"""The chain sampler end to end on a tiny 3-scale chain (encoder-decoders + GPT) saved to disk."""

import pytest
import torch
from omegaconf import OmegaConf
from tiny_chain import IMAGE_SIZE, K, L, N_CLASSES, T, build_denoiser, denoiser_config, write_chain, write_remap

from imagebart.checkpoint_io import load_state_dict
from imagebart.config import ConfigError
from imagebart.modules.ema import shadow_name
from imagebart.sampling.chain import ImageBARTChain, load_denoiser
from imagebart.sampling.config import load_sampling_config

COLD = 1e-6  # temperature at which a scale samples its argmax


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    write_chain(folder)
    return folder


@pytest.fixture(scope="module")
def chain(chain_dir):
    return ImageBARTChain.from_sampling_config(chain_dir / "sampling.yaml", device="cpu")


@pytest.fixture(scope="module")
def class_chain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class_chain")
    return ImageBARTChain.from_sampling_config(write_chain(folder, conditional=True), device="cpu")


def sample(chain, seed=0, b=2, **kwargs):
    return chain.sample(b, generator=chain.make_generator(seed), **kwargs)


def test_chain_properties(chain):
    assert chain.n_scales == T and chain.num_codes == K and chain.latent_shape == (4, 4)
    assert not chain.is_conditional and chain.n_classes is None
    assert [type(m).__name__ for m in chain.models] == ["DenoisingXTransformer"] * 2 + ["DecoderOnlyDenoiser"]
    assert [m.single_scale for m in chain.models] == [1, 2, 3]
    assert all(not m.training for m in chain.models)
    assert chain.describe()["scales"][0]["weights"] == "ema"


def test_first_stage_is_built_once_and_shared(chain_dir, chain):
    assert all(m.first_stage_model is chain.first_stage for m in chain.models)
    # the shared first stage holds scale 1's trained weights, not a fresh initialisation
    saved = load_state_dict(chain_dir / "scale1.ckpt")
    torch.testing.assert_close(chain.first_stage.quantize.embedding.weight,
                               saved["first_stage_model.quantize.embedding.weight"])


def test_sample_shapes_and_token_range(chain):
    out = sample(chain, b=3, return_intermediates=True)
    assert out.tokens.shape == (3, L) and out.tokens.dtype == torch.long
    assert 0 <= int(out.tokens.min()) and int(out.tokens.max()) < K
    assert out.images.shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE) and torch.isfinite(out.images).all()
    assert len(out.intermediates) == T + 1  # x_T, ..., x_0
    assert torch.equal(out.intermediates[-1], out.tokens)
    assert out.class_label is None
    torch.testing.assert_close(out.images, chain.decode(out.tokens))
    assert chain.encode(out.images).shape == (3, L)


def test_seed_reproduces_a_run(chain):
    a, b, c = sample(chain, seed=1), sample(chain, seed=1), sample(chain, seed=2)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.images, b.images)
    assert not torch.equal(a.tokens, c.tokens)


def test_cached_and_uncached_chain_agree(chain):
    """Token by token, the KV cache changes nothing; speculative passes (the default) draw otherwise."""
    cached = sample(chain, seed=4, gamma=0).tokens
    assert torch.equal(cached, sample(chain, seed=4, use_cache=False).tokens)
    assert not torch.equal(cached, sample(chain, seed=4).tokens)


def test_temperature_schedule_is_per_scale_in_sampling_order(chain):
    # every scale cold: the chain ignores x_T, so the seed does not matter
    cold = [sample(chain, seed=s, temperature=COLD).tokens for s in (1, 2)]
    assert torch.equal(*cold)
    # scales T and T-1 cold, scale 1 warm: x_{T-1} and x_1 agree across seeds, x_0 does not
    runs = [sample(chain, seed=s, b=4, temperature=[COLD, COLD, 1.0], return_intermediates=True) for s in (1, 2)]
    assert not torch.equal(runs[0].intermediates[0], runs[1].intermediates[0])  # x_T: noise
    assert torch.equal(runs[0].intermediates[1], runs[1].intermediates[1])  # x_2
    assert torch.equal(runs[0].intermediates[2], runs[1].intermediates[2])  # x_1
    assert not torch.equal(runs[0].tokens, runs[1].tokens)  # x_0


def test_top_k_one_is_greedy_at_every_scale(chain):
    assert torch.equal(sample(chain, seed=1, top_k=1).tokens, sample(chain, seed=2, top_k=[1, 1, 1]).tokens)
    assert chain.top_k_schedule(None) == [K, K, K]  # each config's top_k
    assert chain.top_k_schedule([5, 10 * K, None]) == [5, K, K]  # capped at K


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_k=[1, 2]), r"top_k must be one value or a list of 3 values"),
    (dict(temperature=[1.0] * 4), r"temperature must be one value or a list of 3 values"),
    (dict(top_k=-1), r"top_k values must be >= 1"),
    (dict(top_k=[5, 0, 5]), r"top_k values must be >= 1"),
    (dict(top_k=2.5), r"top_k values must be positive integers"),
    (dict(temperature=0.0), r"temperature values must be numbers > 0"),
    (dict(class_label=3), r"chain is unconditional"),
])
def test_bad_sampling_arguments(chain, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(chain, **kwargs)


def test_ema_weights_are_used(chain_dir, chain):
    saved = load_state_dict(chain_dir / "scale2.ckpt")
    for name, param in chain.models[1].transformer.named_parameters():
        torch.testing.assert_close(param, saved[f"transformer_ema.{shadow_name(name)}"])
        assert not torch.equal(param, saved[f"transformer.{name}"])
    raw = ImageBARTChain.from_sampling_config(chain_dir / "sampling.yaml", device="cpu", ema=False)
    assert raw.describe()["scales"][0]["weights"] == "raw"
    assert not torch.equal(sample(chain, temperature=COLD).tokens, sample(raw, temperature=COLD).tokens)


def test_class_conditional_chain(class_chain):
    assert class_chain.is_conditional and class_chain.n_classes == N_CLASSES
    # token by token, each row's draws are its own (speculative rows advance together)
    a = sample(class_chain, seed=3, class_label=[1, 4], gamma=0)
    b = sample(class_chain, seed=3, class_label=[1, 7], gamma=0)
    assert a.class_label.tolist() == [1, 4]
    assert torch.equal(a.tokens[0], b.tokens[0])  # same label, same draws
    assert not torch.equal(a.tokens[1], b.tokens[1])  # the label of image 1 is used for image 1
    same = sample(class_chain, seed=3, class_label=1, gamma=0)
    assert same.class_label.tolist() == [1, 1] and torch.equal(same.tokens[0], a.tokens[0])
    random = sample(class_chain, seed=3, b=6, class_label="random")
    assert random.class_label.shape == (6,) and 0 <= int(random.class_label.min())
    assert int(random.class_label.max()) < N_CLASSES
    assert torch.equal(random.class_label, sample(class_chain, seed=3, b=6, class_label="random").class_label)


@pytest.mark.parametrize("label,match", [(None, "pass class_label"), (N_CLASSES, r"in 0\.\.9"),
                                         ([1, 2, 3], "one per image"), ("cat", "'random'")])
def test_bad_class_labels(class_chain, label, match):
    with pytest.raises(ValueError, match=match):
        sample(class_chain, class_label=label)


def test_first_stage_from_its_own_checkpoint(tmp_path, chain):
    """Release-style: scale checkpoints without first-stage weights, VQGAN named in the configs."""
    separate = ImageBARTChain.from_sampling_config(write_chain(tmp_path, first_stage_in_checkpoints=False),
                                                   device="cpu")
    tokens = sample(chain).tokens
    torch.testing.assert_close(separate.decode(tokens), chain.decode(tokens))


def test_offload_keeps_only_the_running_scale_placed(chain_dir):
    offloaded = ImageBARTChain.from_sampling_config(chain_dir / "sampling.yaml", device="cpu", offload=True)
    assert offloaded.model_for_scale(2) is offloaded.models[1]
    with pytest.raises(ValueError, match=r"t must be an integer in 1\.\.3"):
        offloaded.model_for_scale(0)


# the sampling config


def test_sampling_config_errors(chain_dir, tmp_path, monkeypatch):
    good = OmegaConf.to_container(OmegaConf.load(chain_dir / "sampling.yaml"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_sampling_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="lacks the key 'configs'"):
        load_sampling_config({"checkpoints": good["checkpoints"]})
    with pytest.raises(ConfigError, match="3 checkpoints but 2 configs"):
        load_sampling_config({"checkpoints": good["checkpoints"], "configs": good["configs"][:2]})
    with pytest.raises(ConfigError, match="unknown keys"):
        load_sampling_config(dict(good, sampler="fast"))
    missing = dict(good, checkpoints=good["checkpoints"][:2] + [str(tmp_path / "scale3.ckpt")])
    with pytest.raises(FileNotFoundError, match=r"checkpoints\[2\] = .*scale3.ckpt.* does not exist"):
        load_sampling_config(missing)
    # relative paths are read from the working directory
    monkeypatch.chdir(chain_dir)
    relative = {"checkpoints": ["scale1.ckpt", "scale2.ckpt", "scale3.ckpt"],
                "configs": ["scale1.yaml", "scale2.yaml", "scale3.yaml"]}
    assert load_sampling_config(relative).checkpoints[2] == chain_dir / "scale3.ckpt"


def test_scales_in_the_wrong_order_are_named(chain_dir):
    good = OmegaConf.to_container(OmegaConf.load(chain_dir / "sampling.yaml"))
    swapped = {"checkpoints": good["checkpoints"][::-1], "configs": good["configs"][::-1]}
    with pytest.raises(ValueError, match="single_scale=3 at position 1"):
        ImageBARTChain.from_sampling_config(swapped, device="cpu")


def test_checkpoint_that_does_not_fit_its_config(chain_dir, tmp_path):
    config = OmegaConf.load(chain_dir / "scale2.yaml")
    # GPT vs encoder-decoder: the record names it first ...
    with pytest.raises(ValueError, match=r"scale3.ckpt was written for another model than scale2.yaml"):
        load_denoiser(config, chain_dir / "scale3.ckpt", config_source="scale2.yaml")
    # ... and a checkpoint without a record (the original release's kind) fails on its weights
    unrecorded = torch.load(chain_dir / "scale3.ckpt", weights_only=True)
    del unrecorded["imagebart"]
    torch.save(unrecorded, tmp_path / "scale3.ckpt")
    with pytest.raises(ValueError, match=r"scale3.ckpt lacks .* weights of the model built from scale2.yaml"):
        load_denoiser(config, tmp_path / "scale3.ckpt", config_source="scale2.yaml")


def test_jointly_trained_model_listed_once(tmp_path):
    """``single_scale`` absent: one network for every t; the sampling config lists it once."""
    config = denoiser_config(1, "residual", write_remap(tmp_path))
    config["model"]["params"]["single_scale"] = None
    model = build_denoiser(config, seed=5)
    torch.save({"state_dict": model.state_dict(), "global_step": 0}, tmp_path / "joint.ckpt")
    OmegaConf.save(OmegaConf.create(config), tmp_path / "joint.yaml")
    joint = ImageBARTChain.from_sampling_config(
        {"checkpoints": [str(tmp_path / "joint.ckpt")], "configs": [str(tmp_path / "joint.yaml")]}, device="cpu")
    assert joint.n_scales == T and all(m is joint.models[0] for m in joint.models)
    assert sample(joint).tokens.shape == (2, L)
