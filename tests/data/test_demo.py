"""DemoScenes: deterministic, valid, varied pictures whose label is the large shape's kind."""

import hashlib

import numpy as np
import pytest

from imagebart.data.demo import KINDS, SHAPE_COLOURS, DemoScenes, DemoTrain, DemoValidation


def digest(example) -> str:
    return hashlib.sha1(example["image"].tobytes()).hexdigest()


@pytest.mark.parametrize("size", [8, 16, 32, 64, 256])
def test_item_format(size):
    data = DemoScenes(size=size, length=5)
    for i in range(len(data)):
        ex = data[i]
        assert ex["image"].shape == (size, size, 3)
        assert ex["image"].dtype == np.float32
        assert ex["image"].min() >= -1.0 and ex["image"].max() <= 1.0
        assert isinstance(ex["class_label"], int)
        assert 0 <= ex["class_label"] < len(DemoScenes.class_names)
        assert ex["human_label"] == DemoScenes.class_names[ex["class_label"]]


def test_default_lengths_and_length_override():
    assert len(DemoTrain()) == 20000
    assert len(DemoValidation()) == 1000
    assert len(DemoScenes(split="validation", length=7)) == 7
    with pytest.raises(IndexError):
        DemoScenes(length=3)[3]


def test_deterministic_for_seed_split_index():
    a, b = DemoScenes(seed=3, length=50), DemoScenes(seed=3, length=50)
    for i in (0, 7, 49):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        assert a[i]["class_label"] == b[i]["class_label"]
    # reading in another order (as shuffled workers do) gives the same pictures
    assert [digest(a[i]) for i in (5, 2, 9)] == [digest(b[i]) for i in (5, 2, 9)]
    # the seed changes the pictures
    c = DemoScenes(seed=4, length=50)
    assert sum(digest(a[i]) == digest(c[i]) for i in range(50)) == 0


def test_train_and_validation_are_disjoint():
    train = DemoTrain(size=16, length=300)
    val = DemoValidation(size=16, length=300)
    train_hashes = {digest(train[i]) for i in range(300)}
    val_hashes = {digest(val[i]) for i in range(300)}
    assert len(train_hashes) == 300 and len(val_hashes) == 300  # indices differ
    assert not train_hashes & val_hashes


def test_pictures_are_varied():
    data = DemoScenes(size=32, length=200)
    examples = [data[i] for i in range(200)]
    labels = np.array([e["class_label"] for e in examples])
    counts = np.bincount(labels, minlength=len(KINDS))
    assert counts.min() >= 30  # every kind shows up often
    images = np.stack([e["image"] for e in examples])  # (N, H, W, 3)
    mean_colours = images.mean(axis=(1, 2))  # (N, 3)
    assert mean_colours.std(axis=0).min() > 0.15  # colours differ between pictures
    per_image_std = images.reshape(200, -1, 3).std(axis=1).mean(axis=1)
    assert per_image_std.min() > 0.05  # never a blank picture


def test_label_is_kind_of_largest_shape():
    data = DemoScenes(size=64, length=60)
    n_small = []
    for i in range(len(data)):
        _, shapes = data.draw(data.rng(i))
        areas = [data.coverage(s.kind, s.centre, s.r).sum() for s in shapes]
        assert data[i]["class_label"] == shapes[0].kind
        assert all(areas[0] > 1.5 * a for a in areas[1:])  # clearly the largest
        n_small.append(len(shapes) - 1)
    assert set(n_small) == {0, 1, 2, 3}


def classify_region(mask: np.ndarray) -> str:
    """Name a filled region from its pixels alone: fill ratio of its bounding box and
    whether it looks the same upside down."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    fill = box.mean()
    if fill > 0.9:
        return "square"
    if fill > 0.7:
        return "circle"
    upside_down = box[::-1]
    iou = (box & upside_down).sum() / (box | upside_down).sum()
    return "cross" if iou > 0.8 else "triangle"


def test_pixels_of_large_shape_show_its_kind():
    """Read the large shape back from the picture (pixels of its colour) where no other shape
    touches it, and recognise its kind from the pixels."""
    data = DemoScenes(size=64, length=80)
    checked = 0
    for i in range(len(data)):
        picture, shapes = data.draw(data.rng(i))
        big = shapes[0]
        big_mask = data.coverage(big.kind, big.centre, big.r) > 0
        if any((data.coverage(s.kind, s.centre, s.r) > 0)[big_mask].any() for s in shapes[1:]):
            continue
        mask = np.abs(picture - SHAPE_COLOURS[big.colour]).max(axis=-1) < 1e-6
        assert classify_region(mask) == DemoScenes.class_names[data[i]["class_label"]], i
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    "kwargs, name",
    [({"split": "test"}, "split"), ({"size": 4}, "size"), ({"length": 0}, "length"),
     ({"seed": -1}, "seed")],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DemoScenes(**kwargs)


def test_convenience_splits_fix_split():
    np.testing.assert_array_equal(
        DemoTrain(length=3)[1]["image"], DemoScenes("train", length=3)[1]["image"]
    )
    np.testing.assert_array_equal(
        DemoValidation(length=3)[1]["image"], DemoScenes("validation", length=3)[1]["image"]
    )
    with pytest.raises(ValueError, match="split"):
        DemoTrain(split="validation")


def test_batches_through_a_dataloader_with_workers():
    """Workers draw the same pictures as the main process (state is only the arguments)."""
    from torch.utils.data import DataLoader

    data = DemoScenes(size=16, length=8)
    batch = next(iter(DataLoader(data, batch_size=8, num_workers=2)))
    assert batch["image"].shape == (8, 16, 16, 3)
    assert batch["class_label"].tolist() == [data[i]["class_label"] for i in range(8)]
    np.testing.assert_array_equal(batch["image"][5].numpy(), data[5]["image"])


def test_captions_say_what_is_drawn():
    from imagebart.data.demo import BACKGROUND_NAMES, PHRASINGS, SHAPE_COLOUR_NAMES

    data = DemoScenes(split="validation", length=200)
    phrasings = set()
    for i in range(len(data)):
        _, shapes, background = data.draw_scene(data.rng(i))
        caption = data[i]["caption"]
        large = f"a large {SHAPE_COLOUR_NAMES[shapes[0].colour]} {KINDS[shapes[0].kind][0]}"
        assert large in caption, (i, caption)
        assert caption.count("a small ") == len(shapes) - 1
        for s in shapes[1:]:
            assert f"a small {SHAPE_COLOUR_NAMES[s.colour]} {KINDS[s.kind][0]}" in caption
        assert BACKGROUND_NAMES[background.first] in caption
        if background.second is not None:
            assert f"{BACKGROUND_NAMES[background.first]} to {BACKGROUND_NAMES[background.second]} gradient" in caption
        phrasings.add(data.phrasing(i))
        assert caption == DemoScenes(split="validation", length=200)[i]["caption"]  # deterministic
    assert phrasings == set(range(len(PHRASINGS)))


def test_captions_through_a_dataloader():
    from torch.utils.data import DataLoader

    data = DemoScenes(size=16, length=4)
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch["caption"] == [data[i]["caption"] for i in range(4)]
