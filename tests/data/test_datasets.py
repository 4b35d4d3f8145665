"""FFHQ, ImageNet and LSUN read tiny fake copies of their on-disk layouts, and say what to put
where when the data is missing."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from imagebart.data.base import DataNotFoundError
from imagebart.data.ffhq import FFHQTrain, FFHQValidation
from imagebart.data.imagenet import ImageNetTrain, ImageNetValidation
from imagebart.data.lsun import (
    LSUNBedroomsTrain,
    LSUNBedroomsValidation,
    LSUNCatsTrain,
    LSUNCatsValidation,
    LSUNChurchesTrain,
    LSUNChurchesValidation,
)
from imagebart.util import instantiate_from_config


def write_png(path, width=24, height=16, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


# FFHQ


def make_ffhq(root):
    for name in ("00001.png", "00002.png", "00003.png"):
        write_png(root / "data" / "ffhq" / name, 32, 32)
    (root / "data" / "ffhqtrain.txt").write_text("00001.png\n00002.png\n")
    (root / "data" / "ffhqvalidation.txt").write_text("00003.png\n")


def test_ffhq_reads_taming_layout_relative_to_cwd(tmp_path, monkeypatch):
    make_ffhq(tmp_path)
    monkeypatch.chdir(tmp_path)
    train, val = FFHQTrain(size=16), FFHQValidation(size=16)
    assert (len(train), len(val)) == (2, 1)
    ex = val[0]
    assert ex["image"].shape == (16, 16, 3) and ex["image"].dtype == np.float32
    assert ex["relative_file_path_"] == "00003.png"
    assert ex["file_path_"] == "data/ffhq/00003.png"
    assert train.flip_p == 0.0  # taming does not flip FFHQ
    # the original configs' target and params build the same dataset
    built = instantiate_from_config(
        {"target": "taming.data.faceshq.FFHQTrain", "params": {"size": 16}}
    )
    np.testing.assert_array_equal(built[1]["image"], train[1]["image"])
    assert set(FFHQTrain(size=16, keys=["image"])[0]) == {"image"}


def test_ffhq_explicit_paths(tmp_path):
    make_ffhq(tmp_path)
    data = FFHQTrain(size=8, root=tmp_path / "data" / "ffhq",
                     file_list=tmp_path / "data" / "ffhqtrain.txt")
    assert data[0]["image"].shape == (8, 8, 3)


def test_ffhq_missing_data_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        FFHQTrain(size=256)
    message = str(err.value)
    for expected in ("data/ffhqtrain.txt", "data/ffhq", "taming-transformers", "images1024x1024"):
        assert expected in message
    # the list is there but the images are not
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ffhqvalidation.txt").write_text("00003.png\n")
    with pytest.raises(DataNotFoundError, match="FFHQ image folder not found: data/ffhq"):
        FFHQValidation(size=256)
    (tmp_path / "data" / "ffhq").mkdir()
    with pytest.raises(DataNotFoundError, match="data/ffhq/00003.png"):
        FFHQValidation(size=256)


# LSUN

LSUN_SPLITS = [
    (LSUNChurchesTrain, "church_outdoor_train.txt", "churches", 0.5),
    (LSUNChurchesValidation, "church_outdoor_val.txt", "churches", 0.0),
    (LSUNBedroomsTrain, "bedrooms_train.txt", "bedrooms", 0.5),
    (LSUNBedroomsValidation, "bedrooms_val.txt", "bedrooms", 0.0),
    (LSUNCatsTrain, "cat_train.txt", "cats", 0.5),
    (LSUNCatsValidation, "cat_val.txt", "cats", 0.0),
]


@pytest.mark.parametrize("cls, txt, folder, flip_p", LSUN_SPLITS)
def test_lsun_reads_original_lists(tmp_path, monkeypatch, cls, txt, folder, flip_p):
    lsun = tmp_path / "data" / "lsun"
    write_png(lsun / folder / "sub" / "a.png", 30, 20)
    write_png(lsun / folder / "b.png", 20, 30, seed=1)
    lsun.joinpath(txt).write_text("sub/a.png\nb.png\n")
    monkeypatch.chdir(tmp_path)
    data = cls(size=12)
    assert len(data) == 2 and data.flip_p == flip_p
    ex = data[0]
    assert ex["image"].shape == (12, 12, 3)
    assert ex["relative_file_path_"] == "sub/a.png"
    assert ex["file_path_"] == f"data/lsun/{folder}/sub/a.png"
    assert cls(size=None)[1]["image"].shape == (20, 20, 3)  # the original's default: crop only
    built = instantiate_from_config({"target": f"imagebart.data.lsun.{cls.__name__}",
                                     "params": {"size": 12}})
    assert len(built) == 2


def test_lsun_train_flips_half_the_time(tmp_path):
    write_png(tmp_path / "imgs" / "a.png", 16, 16)
    (tmp_path / "list.txt").write_text("a.png\n")
    paths = {"txt_file": tmp_path / "list.txt", "data_root": tmp_path / "imgs"}
    train, val = LSUNChurchesTrain(size=16, **paths), LSUNChurchesValidation(size=16, **paths)
    reference = val[0]["image"]
    torch.manual_seed(0)
    flips = [not np.array_equal(train[0]["image"], reference) for _ in range(60)]
    assert 10 < sum(flips) < 50
    assert all(np.array_equal(val[0]["image"], reference) for _ in range(10))


@pytest.mark.parametrize("cls, txt, folder, flip_p", LSUN_SPLITS)
def test_lsun_missing_data_names_paths(tmp_path, monkeypatch, cls, txt, folder, flip_p):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        cls(size=256)
    assert f"data/lsun/{txt}" in str(err.value)
    assert "lsun.zip" in str(err.value) and f"data/lsun/{folder}" in str(err.value)
    (tmp_path / "data" / "lsun").mkdir(parents=True)
    (tmp_path / "data" / "lsun" / txt).write_text("x.png\n")
    with pytest.raises(FileNotFoundError, match=f"data/lsun/{folder}"):
        cls(size=256)


# ImageNet

SYNSETS = ["n01440764", "n01443537", "n09999999"]


def make_imagenet(root, with_filelist=True):
    relpaths = []
    for k, synset in enumerate(SYNSETS):
        for j in range(2):
            relpath = f"{synset}/{synset}_{j}.JPEG"
            write_png(root / "data" / relpath, 40, 24, seed=10 * k + j)  # PNG bytes: PIL sniffs
            relpaths.append(relpath)
    if with_filelist:
        (root / "filelist.txt").write_text("\n".join(relpaths) + "\n")
    return relpaths


def test_imagenet_default_root_follows_xdg_cache(tmp_path, monkeypatch):
    make_imagenet(tmp_path / "autoencoders" / "data" / "ILSVRC2012_validation")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # exactly what the original configs pass
    config = OmegaConf.create({"target": "taming.data.imagenet.ImageNetValidation",
                               "params": {"config": {"size": 16}}})
    data = instantiate_from_config(config)
    assert isinstance(data, ImageNetValidation)
    assert len(data) == 6 and data.class_names == SYNSETS
    labels = [data[i]["class_label"] for i in range(len(data))]
    assert labels == [0, 0, 1, 1, 2, 2]
    ex = data[3]
    assert ex["image"].shape == (16, 16, 3) and ex["image"].dtype == np.float32
    assert ex["synsets"] == "n01443537" and ex["relpath"] == "n01443537/n01443537_1.JPEG"
    assert "human_label" not in ex


def test_imagenet_root_override_crops_and_human_labels(tmp_path):
    root = tmp_path / "train"
    make_imagenet(root)
    (root / "synset_human.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish\nn09999999 something\n"
    )
    train = ImageNetTrain(config={"size": 16}, root=root)
    assert train.random_crop  # taming's training default
    assert train[2]["human_label"] == "goldfish"
    # random crops of a 40x24 picture: several windows appear, reproducibly with a seed
    torch.manual_seed(0)
    crops = [train[0]["image"].tobytes() for _ in range(30)]
    torch.manual_seed(0)
    assert crops == [train[0]["image"].tobytes() for _ in range(30)]
    assert len(set(crops)) > 3
    # taming's nested key turns it off; validation is centre-cropped by default
    fixed = ImageNetTrain(config={"size": 16, "ImageNetTrain": {"random_crop": False}}, root=root)
    assert len({fixed[0]["image"].tobytes() for _ in range(5)}) == 1
    # the original's index -> label YAML works as labels_file too
    (tmp_path / "ids.yaml").write_text('"0": "tench"\n"1": "goldfish"\n"2": "thing"\n')
    assert ImageNetTrain(config={"size": 16}, root=root,
                         labels_file=tmp_path / "ids.yaml")[5]["human_label"] == "thing"


def test_imagenet_builds_filelist_from_synset_folders(tmp_path):
    relpaths = make_imagenet(tmp_path, with_filelist=False)
    write_png(tmp_path / "data" / "n01440764" / "n06596364_9591.JPEG")  # taming skips this one
    data = ImageNetValidation(config={"size": 8}, root=tmp_path)
    assert [data[i]["relpath"] for i in range(len(data))] == relpaths
    assert (tmp_path / "filelist.txt").is_file()


def test_imagenet_missing_data_and_bad_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as err:
        ImageNetTrain(config={"size": 256})
    message = str(err.value)
    expected_root = tmp_path / "cache" / "autoencoders" / "data" / "ILSVRC2012_train"
    assert str(expected_root / "filelist.txt") in message
    assert str(expected_root / "data") in message and "<synset>" in message
    make_imagenet(tmp_path / "in")
    with pytest.raises(ValueError, match="sub_indices"):
        ImageNetTrain(config={"size": 16, "sub_indices": "0-10"}, root=tmp_path / "in")
    (tmp_path / "in" / "filelist.txt").write_text("n01440764/gone.JPEG\n")
    with pytest.raises(DataNotFoundError, match="gone.JPEG"):
        ImageNetValidation(config={"size": 16}, root=tmp_path / "in")
