"""CaptionedImages: image + caption pairs from .tsv / .jsonl lists, and their error messages."""

import json

import numpy as np
import pytest
from PIL import Image

from imagebart.data.base import DataNotFoundError
from imagebart.data.captions import CaptionedImages


def write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pixels = np.full((12, 20, 3), 40 * i, dtype=np.uint8)
        pixels[:, :10, 0] = 255
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / name)


def test_tsv_and_jsonl_give_the_same_items(tmp_path):
    write_images(tmp_path / "img", ["a.png", "sub/b.png"])
    (tmp_path / "img" / "list.tsv").write_text("a.png\ta red  square\n\nsub/b.png\ttwo cats\n")
    (tmp_path / "img" / "list.jsonl").write_text(
        json.dumps({"image": "a.png", "caption": "a red square"}) + "\n"
        + json.dumps({"image": "sub/b.png", "caption": "two cats"}) + "\n")
    tsv = CaptionedImages(tmp_path / "img" / "list.tsv", size=8)
    jsonl = CaptionedImages(tmp_path / "img" / "list.jsonl", size=8)
    assert len(tsv) == len(jsonl) == 2 and tsv.captions == ["a red square", "two cats"]
    for i in range(2):
        assert tsv[i]["caption"] == jsonl[i]["caption"]
        assert tsv[i]["image"].shape == (8, 8, 3) and np.array_equal(tsv[i]["image"], jsonl[i]["image"])
    assert tsv[1]["relative_file_path_"] == "sub/b.png"


def test_flip_and_root(tmp_path):
    write_images(tmp_path / "pictures", ["a.png"])
    (tmp_path / "list.tsv").write_text("a.png\tleft is red\n")
    plain = CaptionedImages(tmp_path / "list.tsv", root=tmp_path / "pictures", size=8)[0]["image"]
    flipped = CaptionedImages(tmp_path / "list.tsv", root=tmp_path / "pictures", size=8, flip_p=1.0)[0]["image"]
    assert np.array_equal(flipped, plain[:, ::-1])


@pytest.mark.parametrize("name, text, error, message", [
    ("list.txt", "a.png\tx\n", ValueError, "expected a .tsv"),
    ("list.tsv", "a.png caption without tab\n", ValueError, "line 1: expected 'path<TAB>caption'"),
    ("list.tsv", "a.png\t   \n", ValueError, "line 1: empty caption"),
    ("list.jsonl", '{"image": "a.png"}\n', ValueError, 'line 1: expected {"image"'),
    ("list.jsonl", "not json\n", ValueError, "line 1: not a JSON object"),
    ("list.tsv", "\n\n", ValueError, "is empty"),
    ("list.tsv", "a.png\tok\ngone.png\tlost\n", DataNotFoundError, "1 of the 2 images in"),
])
def test_errors_name_file_and_line(tmp_path, name, text, error, message):
    write_images(tmp_path, ["a.png"])
    (tmp_path / name).write_text(text)
    with pytest.raises(error, match=message.replace("(", r"\(").replace("{", r"\{")):
        CaptionedImages(tmp_path / name, size=8)


def test_missing_list_and_skip_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="caption list not found"):
        CaptionedImages(tmp_path / "nowhere.tsv")
    write_images(tmp_path, ["a.png"])
    (tmp_path / "list.tsv").write_text("gone.png\tlost\na.png\tkept\n")
    data = CaptionedImages(tmp_path / "list.tsv", size=8, skip_missing=True)
    assert data.captions == ["kept"]
    (tmp_path / "none.tsv").write_text("gone.png\tlost\n")
    with pytest.raises(DataNotFoundError, match="none of the images"):
        CaptionedImages(tmp_path / "none.tsv", skip_missing=True)
