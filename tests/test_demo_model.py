"""The shipped demo chain works right after install: sampling and editing CLIs end to end."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imagebart.data.demo import DemoScenes
from imagebart.cli.sample import main as sample_main
from imagebart.sampling.chain import ImageBARTChain

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "sampling" / "demo.yaml"


def test_shipped_checkpoints_are_small_and_ema_only():
    files = sorted((REPO / "models" / "demo").glob("*.ckpt"))
    chains = [f"{prefix}scale{t}.ckpt" for prefix in ("class_", "text_", "") for t in (1, 2, 3)]
    assert [f.name for f in files] == sorted(chains + ["features.ckpt", "vqgan.ckpt"])
    assert sum(f.stat().st_size for f in files) <= 48 * 2**20
    for f in (f for f in files if f.name in chains):
        state = torch.load(f, map_location="cpu", weights_only=True)["state_dict"]
        assert not any(k.startswith(("transformer_ema.", "first_stage_model.")) for k in state)


def test_sample_cli_on_the_demo_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the sampling config's paths are relative to the repository
    out = tmp_path / "samples"
    assert sample_main(["--config", str(DEMO), "-n", "4", "--batch_size", "4", "--seed", "1",
                        "--outdir", str(out), "--device", "cpu"]) == 0
    pngs = sorted((out / "samples").glob("*.png"))
    assert len(pngs) == 4 and (out / "grid.png").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["seed"] == 1
    image = np.asarray(Image.open(pngs[0]))
    assert image.shape == (32, 32, 3) and image.std() > 5  # a picture, not a flat field


def test_upper_half_completion_keeps_the_upper_half(monkeypatch):
    monkeypatch.chdir(REPO)
    from imagebart.sampling.editing import edit
    from imagebart.sampling.masks import preset_mask

    chain = ImageBARTChain.from_sampling_config(DEMO)
    image = torch.from_numpy(DemoScenes(split="validation", size=32)[3]["image"]).permute(2, 0, 1)[None]
    mask = preset_mask("upper_half", 32, 32)
    result = edit(chain, image, mask, generator=torch.Generator().manual_seed(0), return_intermediates=True)
    x0 = chain.encode(image)
    kept = result.mask.bool()
    assert torch.equal(result.tokens[kept], x0[kept])
    assert not torch.equal(result.tokens[~kept], x0[~kept])  # the lower half was regenerated


def test_shipped_checkpoints_carry_records_that_catch_a_mislabelled_scale(monkeypatch):
    import pytest
    from omegaconf import OmegaConf

    from imagebart.checkpoint_record import CheckpointMismatch

    monkeypatch.chdir(REPO)
    config = OmegaConf.load(DEMO)
    config.checkpoints = [config.checkpoints[1], config.checkpoints[0], config.checkpoints[2]]
    with pytest.raises(CheckpointMismatch, match=r"scale2\.ckpt was written for another model .*single_scale: "
                                                 r"checkpoint 2, config 1"):
        ImageBARTChain.from_sampling_config(OmegaConf.to_container(config), device="cpu")


def test_class_demo_chain_samples_each_class_with_guidance(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "class"
    assert sample_main(["--config", str(REPO / "configs" / "sampling" / "demo_class.yaml"), "-n", "4",
                        "--batch_size", "4", "--class_label", "balanced", "--guidance_scale", "2",
                        "--outdir", str(out), "--device", "cpu"]) == 0
    saved = np.load(out / "tokens.npz")
    assert saved["class_label"].tolist() == [0, 1, 2, 3]
    assert json.loads((out / "settings.json").read_text())["guidance_scale"] == [2.0, 2.0, 2.0]


def test_text_demo_chain_samples_a_caption_and_edits_with_one(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    from imagebart.cli.inpaint import main as inpaint_main

    config = str(REPO / "configs" / "sampling" / "demo_text.yaml")
    caption = "a red circle on a dark background"
    out = tmp_path / "text"
    assert sample_main(["--config", config, "-n", "2", "--caption", caption, "--guidance_scale", "2",
                        "--outdir", str(out), "--device", "cpu"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["caption"] == caption and settings["chain"]["text_conditional"] is True
    assert len(list((out / "samples").glob("*.png"))) == 2
    photo = tmp_path / "photo.png"
    Image.fromarray(((DemoScenes(split="validation", size=32)[0]["image"] + 1) * 127.5).astype(np.uint8)).save(photo)
    edited = tmp_path / "edited"
    assert inpaint_main(["--config", config, "--image", str(photo), "--mask", "centre:0.5", "--caption",
                         "a yellow square", "-n", "2", "--outdir", str(edited), "--device", "cpu"]) == 0
    assert len(list(edited.rglob("sample_*.png"))) == 2

