"""``--guidance_scale`` in scripts/sample.py and scripts/inpaint.py on a tiny guided class chain."""

import json

import numpy as np
import pytest
from PIL import Image
from tiny_chain import IMAGE_SIZE, write_chain

from imagebart.cli import inpaint, sample
from imagebart.sampling.batch import batch_seed
from imagebart.sampling.chain import ImageBARTChain


@pytest.fixture(scope="module")
def guided_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("guided"), conditional=True, cond_drop_prob=0.1)


@pytest.fixture(scope="module")
def unguided_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("unguided"), conditional=True)


def test_sample_with_guidance_records_it_and_matches_the_api(guided_yaml, tmp_path):
    out = tmp_path / "run"
    assert sample.main(["--config", str(guided_yaml), "--outdir", str(out), "--device", "cpu", "-n", "2",
                        "--class_label", "3", "--guidance_scale", "3,2,1"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["guidance_scale"] == [3.0, 2.0, 1.0]
    chain = ImageBARTChain.from_sampling_config(guided_yaml, device="cpu")
    again = chain.sample(2, class_label=3, guidance_scale=[3, 2, 1], generator=chain.make_generator(batch_seed(0, 0)))
    assert np.array_equal(np.load(out / "tokens.npz")["tokens"], again.tokens.numpy())


def test_inpaint_with_guidance(guided_yaml, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(image)
    assert inpaint.main(["--config", str(guided_yaml), "--image", str(image), "--outdir", str(tmp_path / "out"),
                         "--device", "cpu", "-n", "1", "--class_label", "2", "--guidance_scale", "2"]) == 0
    settings = json.loads((tmp_path / "out" / "photo.png" / "settings.json").read_text())
    assert settings["guidance_scale"] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("which,extra,message", [
    ("unguided", ["--class_label", "1", "--guidance_scale", "2"], "trained without model.params.cond_drop_prob"),
    ("guided", ["--class_label", "1", "--guidance_scale", "-1"], "numbers >= 0"),
    ("guided", ["--class_label", "1", "--guidance_scale", "lots"], "--guidance_scale"),
    ("guided", ["--class_label", "1", "--guidance_scale", "2,2"], "list of 3 values"),
])
def test_sample_guidance_errors(guided_yaml, unguided_yaml, tmp_path, capsys, which, extra, message):
    config = guided_yaml if which == "guided" else unguided_yaml
    with pytest.raises(SystemExit) as exit_info:
        sample.main(["--config", str(config), "--outdir", str(tmp_path / "out"), "--device", "cpu", "-n", "1",
                     *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "settings.json").exists()


def test_guidance_on_an_unconditional_chain_is_refused(tmp_path, capsys):
    config = write_chain(tmp_path / "plain")
    with pytest.raises(SystemExit):
        sample.main(["--config", str(config), "--outdir", str(tmp_path / "out"), "--device", "cpu", "-n", "1",
                     "--guidance_scale", "2"])
    assert "unconditional: guidance_scale needs a class-conditional chain" in capsys.readouterr().err
