"""A sampling config made of the original's checkpoints samples end to end, also after conversion."""

import pytest
import torch
from omegaconf import OmegaConf

from imagebart.checkpoint_io import load_state_dict
from imagebart.sampling.chain import ImageBARTChain
from imagebart.cli.convert import main as convert


@pytest.fixture
def reference_chain(reference_dir, tmp_path):
    """Scales 1-3 from an original-format fixture (the fixtures' first stages differ, and a
    chain needs one, so the encoder-decoder fixture serves every scale)."""
    ckpts = reference_dir / "checkpoints"
    picks = [("xtransformer", 1), ("xtransformer", 2), ("xtransformer", 3)]
    configs, checkpoints = [], []
    for name, scale in picks:
        config = OmegaConf.load(ckpts / name / "config.yaml")
        config.model.params.single_scale = scale
        config.model.params.first_stage_config.params.remap = str(ckpts / name / "vqgan_used_indices.npy")
        path = tmp_path / f"scale{scale}.yaml"
        OmegaConf.save(config, path)
        configs.append(str(path))
        checkpoints.append(str(ckpts / name / "model.ckpt"))
    sampling = tmp_path / "sampling.yaml"
    OmegaConf.save({"checkpoints": checkpoints, "configs": configs}, sampling)
    return sampling, checkpoints, configs


def test_official_format_chain_samples_end_to_end(reference_chain):
    sampling, _, _ = reference_chain
    chain = ImageBARTChain.from_sampling_config(sampling)
    assert chain.n_scales == 3 and chain.num_codes == 48 and chain.latent_shape == (4, 4)
    assert all(m.transformer.legacy_2021 for m in chain.models)  # detected from the checkpoints
    result = chain.sample(2, top_k=10, generator=torch.Generator().manual_seed(0), return_intermediates=True)
    assert result.tokens.shape == (2, 16) and result.images.shape == (2, 3, 32, 32)
    assert int(result.tokens.min()) >= 0 and int(result.tokens.max()) < 48
    assert len(result.intermediates) == 4


def test_converted_ema_only_checkpoints_sample_the_same_and_say_they_are_ema(reference_chain, tmp_path, caplog):
    sampling, checkpoints, configs = reference_chain
    converted = []
    for i, path in enumerate(checkpoints):
        out = tmp_path / f"native{i}.ckpt"
        # scale 1 keeps the first stage for the whole chain; the others drop theirs
        assert convert([path, str(out), "--ema_only"] + (["--drop_first_stage"] if i else [])) == 0
        converted.append(str(out))
    state = load_state_dict(converted[1])
    assert not any(k.startswith(("transformer_ema.", "first_stage_model.")) for k in state)
    native = tmp_path / "native.yaml"
    OmegaConf.save({"checkpoints": converted, "configs": configs}, native)
    original = ImageBARTChain.from_sampling_config(sampling).sample(2, generator=torch.Generator().manual_seed(3))
    caplog.clear()
    with caplog.at_level("INFO", logger="imagebart"):
        exported = ImageBARTChain.from_sampling_config(native)
    # one true message: the exports hold EMA weights, and the shared first stage is not "missing"
    assert [scale["weights"] for scale in exported.describe()["scales"]] == ["ema"] * 3
    assert "holds EMA weights only" in caplog.text
    assert "holds no EMA weights" not in caplog.text and "keys missing" not in caplog.text
    again = exported.sample(2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(original.tokens, again.tokens)
    torch.testing.assert_close(original.images, again.images)
