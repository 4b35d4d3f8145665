"""scripts/reconstruct.py: reconstructions, completions and denoising from x_t as ADM-style .npz, with labels."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tiny_chain import IMAGE_SIZE, write_chain

from imagebart.cli import reconstruct
from imagebart.data.demo import DemoScenes
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.editing import denoise_from


@pytest.fixture(scope="module")
def chain_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def demo16(tmp_path_factory):
    """A config whose validation data are the demo scenes at the tiny chain's 16 px."""
    path = tmp_path_factory.mktemp("data") / "demo16.yaml"
    OmegaConf.save(OmegaConf.create({"data": {"params": {"validation": {
        "target": "imagebart.data.demo.DemoScenes", "params": {"split": "validation", "size": IMAGE_SIZE}}}}}), path)
    return path


@pytest.mark.parametrize("extra", [[], ["--mask", "upper_half"], ["--from_t", "1"], ["--from_t", "3"]])
def test_writes_images_and_demo_labels(chain_yaml, demo16, tmp_path, extra):
    out = tmp_path / "r.npz"
    assert reconstruct.main(["--config", str(chain_yaml), "--images", str(demo16), "--n", "6", "--out",
                             str(out), "--device", "cpu", "--batch_size", "4", *extra]) == 0
    arrays = np.load(out)
    assert arrays["arr_0"].shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3) and arrays["arr_0"].dtype == np.uint8
    assert arrays["arr_1"].tolist() == [DemoScenes(split="validation", length=6)[i]["class_label"] for i in range(6)]


def test_denoise_from_is_seeded_and_checks_t(chain_yaml):
    chain = ImageBARTChain.from_sampling_config(chain_yaml, device="cpu")
    images = torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)  # the remap draws codes outside its list at random (as the original did)
        runs.append(denoise_from(chain, images, 2, generator=chain.make_generator(seed)))
    assert runs[0].shape == images.shape and torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    with pytest.raises(ValueError, match="t must be an int in 1..3"):
        denoise_from(chain, images, 4)


def test_from_t_and_mask_together_are_refused(chain_yaml, tmp_path, capsys):
    with pytest.raises(SystemExit):
        reconstruct.main(["--config", str(chain_yaml), "--images", "demo:validation", "--out", str(tmp_path / "r.npz"),
                          "--from_t", "1", "--mask", "upper_half", "--device", "cpu"])
    assert "--from_t and --mask" in capsys.readouterr().err
