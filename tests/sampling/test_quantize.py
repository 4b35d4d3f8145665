"""--quantize int8: dynamic int8 linear layers for CPU sampling (not exact, close)."""

import json

import pytest
import torch
from torch import nn

from tiny_chain import L, write_chain

from imagebart.cli.sample import main
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.quantize import quantize_chain


@pytest.fixture(scope="module")
def sampling_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("quantized_chain"))


def test_int8_replaces_every_linear_layer_and_keeps_the_logits_close(sampling_yaml, caplog):
    chain = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    g = torch.Generator().manual_seed(0)
    inputs = []
    for model in chain.models:
        condition = model.network_condition(torch.randint(0, chain.num_codes, (4, L), generator=g),
                                            torch.full((4,), model.single_scale))
        x_prev = torch.randint(0, chain.num_codes, (4, L), generator=g)
        inputs.append((condition, x_prev, model.transformer.teacher_forced(condition, x_prev)))
    quantize_chain(chain, "int8")
    for model, (condition, x_prev, logits) in zip(chain.models, inputs):
        assert not any(type(m) is nn.Linear for m in model.transformer.modules())
        assert any("quantized" in type(m).__module__ for m in model.transformer.modules())
        quantized = model.transformer.teacher_forced(condition, x_prev)
        assert torch.corrcoef(torch.stack((quantized.flatten(), logits.flatten())))[0, 1] > 0.9  # tiny random nets: ~0.96
        assert not torch.equal(quantized, logits)
    with caplog.at_level("INFO", logger="imagebart"):
        tokens = chain.sample(3, generator=chain.make_generator(0)).tokens
    # int8 decodes through x-transformers' path without trying (and failing) the lean decoder's probe
    assert "lean decoding differs" not in caplog.text
    assert tokens.shape == (3, L) and torch.equal(tokens, chain.sample(3, generator=chain.make_generator(0)).tokens)
    assert chain.describe()["quantized"] == "int8"


def test_quantize_refuses_what_it_cannot_do(sampling_yaml):
    chain = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    with pytest.raises(ValueError, match="--quantize must be one of"):
        quantize_chain(chain, "int4")
    offloaded = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu", offload=True)
    with pytest.raises(ValueError, match="CPU only.*--offload"):
        quantize_chain(offloaded, "int8")
    assert quantize_chain(chain, None).quantized is None


def test_sample_cli_records_the_quantization(sampling_yaml, tmp_path):
    out = tmp_path / "q"
    assert main(["--config", str(sampling_yaml), "--outdir", str(out), "--device", "cpu", "-n", "2",
                 "--quantize", "int8"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["chain"]["quantized"] == "int8" and len(list((out / "samples").glob("*.png"))) == 2
