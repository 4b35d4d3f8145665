"""Image helpers, ImageFolder and ImageFileList on tiny PNGs written to tmp_path."""

import numpy as np
import pytest
import torch
from PIL import Image

from imagebart.data.base import DataNotFoundError, ImagePaths, load_image, preprocess_image
from imagebart.data.folder import ImageFileList, ImageFolder


def write_png(path, width, height, seed=0):
    """A random RGB picture whose left and right halves differ (so flips are visible)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def test_preprocess_centre_crops_then_resizes(tmp_path):
    # a wide picture: red square in the middle, blue bands left and right
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :, 2] = 255
    pixels[:, 10:30] = [255, 0, 0]
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = preprocess_image(load_image(tmp_path / "wide.png"), size=8)
    assert image.shape == (8, 8, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[..., 0], 1.0, atol=1e-6)  # only the red centre survives
    np.testing.assert_allclose(image[..., 2], -1.0, atol=1e-6)
    # size=None keeps the square crop's own size; grey maps to the middle of [-1, 1]
    Image.fromarray(np.full((6, 9, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    grey = preprocess_image(load_image(tmp_path / "grey.png"), size=None)
    assert grey.shape == (6, 6, 3)
    np.testing.assert_allclose(grey, 128 / 127.5 - 1.0)


def test_load_image_converts_to_rgb(tmp_path):
    Image.fromarray(np.full((5, 5), 200, np.uint8), mode="L").save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((5, 5, 4), np.uint8), mode="RGBA").save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "grey.png").mode == "RGB"
    assert load_image(tmp_path / "rgba.png").mode == "RGB"


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image(bad)
    # a truncated PNG fails on decode, still naming the file
    write_png(tmp_path / "ok.png", 32, 32)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        ImagePaths([tmp_path / "cut.png"], size=8)[0]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_image_folder_scans_recursively_sorted(tmp_path):
    write_png(tmp_path / "b.png", 30, 20)
    write_png(tmp_path / "a.JPG", 12, 12)  # extension match ignores case
    write_png(tmp_path / "sub" / "deeper" / "c.png", 16, 40)
    (tmp_path / "notes.txt").write_text("not an image")
    data = ImageFolder(tmp_path, size=16)
    assert [data.file_path(i).split("/")[-1] for i in range(len(data))] == ["a.JPG", "b.png", "c.png"]
    assert len(data) == 3
    for i in range(len(data)):
        ex = data[i]
        assert ex["image"].shape == (16, 16, 3) and ex["image"].dtype == np.float32
        assert -1.0 <= ex["image"].min() and ex["image"].max() <= 1.0
        assert "class_label" not in ex
    again = ImageFolder(tmp_path, size=16)
    assert [again.file_path(i) for i in range(3)] == [data.file_path(i) for i in range(3)]  # deterministic order


def test_image_folder_labels_from_subfolders(tmp_path):
    write_png(tmp_path / "dogs" / "1.png", 10, 10)
    write_png(tmp_path / "cats" / "x" / "2.png", 10, 10)
    write_png(tmp_path / "cats" / "1.png", 10, 10)
    (tmp_path / "empty_class").mkdir()
    data = ImageFolder(tmp_path, size=8, labels_from_subfolders=True)
    assert data.class_names == ["cats", "dogs"]
    labels = {p.split(str(tmp_path))[1]: data[i]["class_label"] for i, p in enumerate(map(data.file_path, range(len(data))))}
    assert labels == {"/cats/1.png": 0, "/cats/x/2.png": 0, "/dogs/1.png": 1}
    assert data[len(data) - 1]["human_label"] == "dogs"
    # an image outside any class folder is an error that names it
    write_png(tmp_path / "stray.png", 10, 10)
    with pytest.raises(ValueError, match="stray.png"):
        ImageFolder(tmp_path, labels_from_subfolders=True)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="empty"):
        ImagePaths([], name="my list")
    write_png(tmp_path / "one" / "a.png", 8, 8)
    with pytest.raises(ValueError, match="flip_p"):
        ImageFolder(tmp_path / "one", flip_p=1.5)
    with pytest.raises(ValueError, match="size"):
        ImageFolder(tmp_path / "one", size=0)
    with pytest.raises(ValueError, match="interpolation"):
        ImageFolder(tmp_path / "one", interpolation="cubic-ish")


def test_flip(tmp_path):
    write_png(tmp_path / "a.png", 16, 16)
    plain = ImageFolder(tmp_path, size=16, flip_p=0.0)[0]["image"]
    flipped = ImageFolder(tmp_path, size=16, flip_p=1.0)[0]["image"]
    np.testing.assert_array_equal(flipped, plain[:, ::-1])
    # with flip_p=0.5 the flips follow torch's generator: same seed, same flips; both occur
    half = ImageFolder(tmp_path, size=16, flip_p=0.5)

    def flips(seed):
        torch.manual_seed(seed)
        return [bool(np.array_equal(half[0]["image"], flipped)) for _ in range(40)]

    assert flips(1) == flips(1)
    assert 5 < sum(flips(1)) < 35


def test_image_file_list(tmp_path):
    root = tmp_path / "images"
    write_png(root / "x" / "one.png", 20, 30, seed=1)
    write_png(root / "two.png", 30, 20, seed=2)
    (tmp_path / "list.txt").write_text("two.png\n\nx/one.png\n")
    data = ImageFileList(tmp_path / "list.txt", root=root, size=12)
    assert len(data) == 2
    assert [data[i]["relative_file_path_"] for i in range(2)] == ["two.png", "x/one.png"]
    assert data[1]["image"].shape == (12, 12, 3)
    # root defaults to the list's folder
    (root / "local.txt").write_text("two.png\n")
    assert ImageFileList(root / "local.txt", size=12)[0]["file_path_"] == str(root / "two.png")
    with pytest.raises(DataNotFoundError, match="absent.txt"):
        ImageFileList(tmp_path / "absent.txt")
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="blank.txt"):
        ImageFileList(tmp_path / "blank.txt", root=root)
    with pytest.raises(FileNotFoundError, match="no_root"):
        ImageFileList(tmp_path / "list.txt", root=tmp_path / "no_root")
