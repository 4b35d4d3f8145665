"""scripts/pretokenize.py and the token dataset: the same tokens as encoding on the fly, the same loss."""

import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from imagebart.cli.pretokenize import main as pretokenize
from imagebart.cli.train import main as train
from imagebart.data.base import DataNotFoundError
from imagebart.data.demo import DemoScenes
from imagebart.data.tokens import PretokenizedImages
from imagebart.util import instantiate_from_config

L, K = 16, 32  # the tiny first stage: 4 x 4 tokens, 32 codes


@pytest.fixture(scope="module")
def tokens_dir(tiny_scale1_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens")
    assert pretokenize(["--base", str(tiny_scale1_config), "--out", str(out), "--flips", "--batch_size", "5",
                        "--device", "cpu"]) == 0
    return out


def first_stage(config_path):
    return instantiate_from_config(OmegaConf.load(config_path).model.params.first_stage_config).eval()


def test_tokens_are_the_first_stage_encodings(tiny_scale1_config, tokens_dir):
    data = PretokenizedImages(tokens_dir / "train.npz")
    source = DemoScenes(split="train", size=16, length=32)
    assert len(data) == 32 and data.meta["num_codes"] == K and data.meta["flips"] is True
    images = torch.from_numpy(np.stack([source[i]["image"] for i in range(32)])).permute(0, 3, 1, 2)
    vqgan = first_stage(tiny_scale1_config)
    assert torch.equal(torch.from_numpy(data.arrays["tokens"]).long(), vqgan.encode_tokens(images))
    assert torch.equal(torch.from_numpy(data.arrays["flipped"]).long(), vqgan.encode_tokens(images.flip(-1)))
    item = data[3]
    assert item["tokens"].dtype == np.int64 and item["tokens"].shape == (L,)
    assert item["class_label"] == source[3]["class_label"] and item["caption"] == source[3]["caption"]


def test_flip_p_picks_the_mirrored_encoding(tokens_dir):
    always = PretokenizedImages(tokens_dir / "train.npz", flip_p=1.0)
    assert np.array_equal(always[5]["tokens"], always.arrays["flipped"][5])
    assert np.array_equal(PretokenizedImages(tokens_dir / "train.npz")[5]["tokens"], always.arrays["tokens"][5])


def test_the_loss_on_tokens_is_the_loss_on_images(tiny_scale1_config, tokens_dir):
    config = OmegaConf.load(tiny_scale1_config)
    model = instantiate_from_config(config.model).eval()
    source = DemoScenes(split="validation", size=16, length=8)
    images = {"image": torch.from_numpy(np.stack([source[i]["image"] for i in range(4)]))}
    data = PretokenizedImages(tokens_dir / "validation.npz")
    tokens = {"tokens": torch.from_numpy(np.stack([data[i]["tokens"] for i in range(4)]))}
    losses = []
    for batch in (images, tokens):
        torch.manual_seed(0)
        losses.append(model.shared_step(batch)[0])
    torch.testing.assert_close(*losses)
    with pytest.raises(ValueError, match=r"batch\['tokens'\] holds codes .* K=32"):
        model.shared_step({"tokens": tokens["tokens"] + K})
    with pytest.raises(ValueError, match=r"batch\['tokens'\] must hold x_0 tokens \(B, L=16\)"):
        model.shared_step({"tokens": tokens["tokens"][:, :8]})


def test_training_runs_on_tokens(tiny_scale1_config, tokens_dir, tmp_path):
    config = OmegaConf.load(tiny_scale1_config)  # the data section replaced, as in configs/demo/scale1_pretokenized.yaml
    for split, flip_p in (("train", 0.5), ("validation", 0.0)):
        config.data.params[split] = {"target": "imagebart.data.tokens.PretokenizedImages",
                                     "params": {"path": str(tokens_dir / f"{split}.npz"), "flip_p": flip_p}}
    OmegaConf.save(config, tmp_path / "on_tokens.yaml")
    train(["--base", str(tmp_path / "on_tokens.yaml"), "-t", "-l", str(tmp_path / "logs"), "--max_steps", "2",
                  "--limit_val_batches", "1", "--num_sanity_val_steps", "0",
                  "lightning.callbacks.image_logger.params.batch_frequency=1",
                  "lightning.trainer.enable_progress_bar=false"])
    run = next((tmp_path / "logs").iterdir())
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "images").rglob("*.png"))  # image logs decode the tokens when there are no images


def test_bad_token_data_is_named(tiny_scale1_config, tokens_dir, tmp_path, capsys):
    with pytest.raises(DataNotFoundError, match="scripts/pretokenize.py"):
        PretokenizedImages(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected 'tokens'"):
        PretokenizedImages(tmp_path / "other.npz")
    plain = tmp_path / "plain"
    assert pretokenize(["--base", str(tiny_scale1_config), "--out", str(plain), "--splits", "validation"]) == 0
    with pytest.raises(ValueError, match="--flips"):
        PretokenizedImages(plain / "validation.npz", flip_p=0.5)
    for argv, message in (([], "exist; pass --force"), (["--splits", "test"], r"--splits \['test'\] not in data.params")):
        with pytest.raises(SystemExit):
            pretokenize(["--base", str(tiny_scale1_config), "--out", str(tokens_dir), *argv])
        assert re.search(message, capsys.readouterr().err)


def test_compiled_training_keeps_the_checkpoint_keys(tiny_scale1_config, tmp_path):
    """The opt-in torch.compile callback (eager backend here: the plumbing, not the compiler)."""
    trainer = train(["--base", str(tiny_scale1_config), "-t", "-l", str(tmp_path / "logs"), "--max_steps", "1",
           "--limit_val_batches", "0", "--num_sanity_val_steps", "0",
           "lightning.callbacks.compile.target=imagebart.callbacks.CompileNetwork",
           "lightning.callbacks.compile.params.backend=eager", "lightning.trainer.enable_progress_bar=false"])
    assert trainer.lightning_module.transformer._compiled_call_impl is not None
    checkpoint = torch.load(next((tmp_path / "logs").rglob("last.ckpt")), map_location="cpu", weights_only=False)
    keys = list(checkpoint["state_dict"])
    assert any(k.startswith("transformer.") for k in keys) and not any("_orig_mod" in k for k in keys)
