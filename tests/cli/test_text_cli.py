"""``--caption`` in scripts/sample.py and scripts/inpaint.py on a tiny text-conditional chain."""

import json

import numpy as np
import pytest
from PIL import Image
from tiny_chain import CAPTIONS, IMAGE_SIZE, write_chain

from imagebart.cli import inpaint, sample
from imagebart.sampling.batch import batch_seed
from imagebart.sampling.chain import ImageBARTChain


@pytest.fixture(scope="module")
def text_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("text"), text=True, cond_drop_prob=0.1)


def test_sample_with_captions_cycled_and_recorded(text_yaml, tmp_path):
    out = tmp_path / "run"
    assert sample.main(["--config", str(text_yaml), "--outdir", str(out), "--device", "cpu", "-n", "3",
                        "--batch_size", "2", "--caption", CAPTIONS[0], "--caption", CAPTIONS[1],
                        "--guidance_scale", "2"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["caption"] == [CAPTIONS[0], CAPTIONS[1]]
    saved = np.load(out / "tokens.npz")
    assert saved["caption"].tolist() == [CAPTIONS[0], CAPTIONS[1], CAPTIONS[0]]
    chain = ImageBARTChain.from_sampling_config(text_yaml, device="cpu")
    again = chain.sample(1, caption=[CAPTIONS[0]], guidance_scale=2.0, generator=chain.make_generator(batch_seed(0, 1)))
    assert np.array_equal(saved["tokens"][2:], again.tokens.numpy())


def test_inpaint_with_a_caption(text_yaml, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(image)
    assert inpaint.main(["--config", str(text_yaml), "--image", str(image), "--outdir", str(tmp_path / "out"),
                         "--device", "cpu", "-n", "2", "--mask", "centre:0.5", "--caption", "a large green cross"]) == 0
    folder = tmp_path / "out" / "photo.png"
    assert json.loads((folder / "settings.json").read_text())["caption"] == "a large green cross"
    assert len(list(folder.glob("sample_*.png"))) == 2


@pytest.mark.parametrize("cli, extra, message", [
    ("sample", [], "text-conditional: pass --caption"),
    ("inpaint", [], "text-conditional: pass --caption"),
    ("sample", ["--caption", "a red circle", "--class_label", "2"], "class_label was given but the chain is text"),
])
def test_missing_caption_is_named(text_yaml, tmp_path, capsys, cli, extra, message):
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(image)
    common = ["--config", str(text_yaml), "--outdir", str(tmp_path / "out"), "--device", "cpu", "-n", "1", *extra]
    with pytest.raises(SystemExit):
        (sample.main(common) if cli == "sample" else inpaint.main(common + ["--image", str(image)]))
    assert message in capsys.readouterr().err


def test_caption_for_an_unconditional_chain_is_refused(tmp_path, capsys):
    config = write_chain(tmp_path / "plain")
    with pytest.raises(SystemExit):
        sample.main(["--config", str(config), "--outdir", str(tmp_path / "out"), "--device", "cpu", "-n", "1",
                     "--caption", "a red circle"])
    assert "not text-conditional" in capsys.readouterr().err


def test_caption_table_end_to_end(text_yaml, tmp_path, capsys):
    from imagebart.cli import caption_table

    out = tmp_path / "agreement.json"
    assert caption_table.main(["--config", str(text_yaml), "-n", "6", "--guidance_scales", "1,2",
                               "--batch_size", "3", "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["guidance_scale"] for r in rows] == [1.0, 2.0]
    assert all(0 <= r["joint_agreement"] <= min(r["kind_agreement"], r["colour_agreement"]) for r in rows)
    assert all(r["fid"] > 0 for r in rows)
    assert "| 2 |" in capsys.readouterr().out


def test_agreement_reads_real_pictures_as_their_captions():
    """On the validation pictures themselves the feature network agrees with every caption."""
    import torch

    from imagebart.cli.caption_table import agreement, validation_targets
    from imagebart.data.demo import DemoScenes
    from imagebart.evaluation.demo_features import load_demo_features

    captions, kinds, colours = validation_targets(40)
    data = DemoScenes(split="validation", length=40)
    images = torch.stack([torch.from_numpy(data[i]["image"]).permute(2, 0, 1) for i in range(40)])
    assert agreement(load_demo_features(), images, kinds, colours)["joint_agreement"] >= 0.95
    assert agreement(load_demo_features(), images, (kinds + 1) % 4, colours)["kind_agreement"] <= 0.05
    assert len(captions) == 40
