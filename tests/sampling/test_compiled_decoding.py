"""--compile: decode steps through torch.compile draw the tokens the eager steps draw."""

import json

import pytest
import torch

from tiny_chain import write_chain

from imagebart.cli.sample import main
from imagebart.sampling.chain import ImageBARTChain


@pytest.fixture(scope="module")
def sampling_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("compiled_chain"))


def test_compile_refuses_int8(sampling_yaml, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(sampling_yaml), "--outdir", str(tmp_path / "x"), "--device", "cpu", "-n", "1",
              "--quantize", "int8", "--compile"])
    assert exit_info.value.code == 2
    assert "--quantize and --compile do not go together" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    chain = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    chain.quantized = "int8"
    with pytest.raises(ValueError, match="int8"):
        chain.compile_decoding()


@pytest.mark.slow
def test_a_compiled_chain_draws_the_eager_chains_tokens_and_says_so(sampling_yaml, tmp_path):
    eager = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    expected = [eager.sample(3, generator=eager.make_generator(seed), gamma=gamma).tokens
                for seed, gamma in ((0, 0), (1, 2))]
    compiled = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu").compile_decoding()
    for (seed, gamma), tokens in zip(((0, 0), (1, 2)), expected):
        assert torch.equal(compiled.sample(3, generator=compiled.make_generator(seed), gamma=gamma).tokens, tokens)
    assert all(model.transformer._compiled_steps.sizes for model in compiled.models)  # graphs were used
    out = tmp_path / "c"
    assert main(["--config", str(sampling_yaml), "--outdir", str(out), "--device", "cpu", "-n", "2", "--compile"]) == 0
    assert json.loads((out / "settings.json").read_text())["chain"]["compiled_decoding"] is True
