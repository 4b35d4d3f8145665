"""Editing masks: presets at image and token resolution, user mask files, CLI specs."""

import numpy as np
import pytest
import torch
from PIL import Image

from imagebart.sampling.masks import (
    centre_window, edit_all, grey_out, keep_all, latent_mask, load_mask, lower_half, mask_from_image,
    outpaint, parse_mask, preset_mask, upper_half,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# presets -> token grid (32x32 pixels, 4x4 tokens, as the tiny VQGANs)


@pytest.mark.parametrize("mask, expected", [
    (upper_half(32, 32), [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]),
    (lower_half(32, 32), [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]),
    (centre_window(32, 32, 0.5), [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]),
    (centre_window(32, 32, 16), [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]),
    (outpaint(32, 32, 0.5), [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]),
    (keep_all(32, 32), [[1] * 4] * 4),
    (edit_all(32, 32), [[0] * 4] * 4),
])
def test_presets_on_the_token_grid(mask, expected):
    assert mask.shape == (32, 32)
    assert torch.equal(latent_mask(mask, (4, 4)), t(expected))


def test_window_geometry_in_pixels():
    mask = centre_window(8, 10, 4)  # 4x4 hole, rows 2..5, cols 3..6
    expected = torch.ones(8, 10)
    expected[2:6, 3:7] = 0
    assert torch.equal(mask, expected)
    assert torch.equal(outpaint(8, 10, 4), 1 - expected)
    # fractions apply to each side: 0.5 of 8 rows and 10 columns
    hole = torch.from_numpy(np.pad(np.ones((4, 5), bool), ((2, 2), (2, 3))))  # 4 rows, 5 columns
    assert torch.equal(centre_window(8, 10, 0.5) == 0, hole)


def test_nearest_resize_takes_the_top_left_pixel_of_each_patch():
    # 8 px per token: a window of 0.25 * 32 = 8 px at rows/cols 12..19 covers pixel 16 only
    assert torch.equal(latent_mask(centre_window(32, 32, 0.25), (4, 4)),
                       t([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]]))


def test_latent_mask_keeps_leading_dims_and_passes_token_masks_through():
    batch = torch.stack([upper_half(16, 16), outpaint(16, 16, 0.5)])[:, None]  # (2, 1, 16, 16)
    small = latent_mask(batch, (4, 4))
    assert small.shape == (2, 1, 4, 4)
    assert torch.equal(small[0, 0], t([[1] * 4, [1] * 4, [0] * 4, [0] * 4]))
    token_mask = t([[0, 1], [1, 0]])
    assert torch.equal(latent_mask(token_mask, (2, 2)), token_mask)
    assert torch.equal(latent_mask(token_mask.bool(), (2, 2)), token_mask)


@pytest.mark.parametrize("bad, match", [
    (torch.empty(0, 4), "empty"),
    (torch.full((4, 4), 2.0), r"\[0, 1\]"),
    (torch.full((4, 4), float("nan")), r"\[0, 1\]"),
    (torch.ones(4), "at least 2 dims"),
])
def test_latent_mask_rejects_bad_masks(bad, match):
    with pytest.raises(ValueError, match=match):
        latent_mask(bad, (4, 4))


@pytest.mark.parametrize("call, match", [
    (lambda: centre_window(32, 32, 1.5), r"\(0, 1\]"),
    (lambda: centre_window(32, 32, 0), "pixels"),
    (lambda: outpaint(32, 32, 40), "1..32"),
    (lambda: centre_window(32, 32, True), "fraction"),
    (lambda: upper_half(0, 32), "height"),
    (lambda: preset_mask("lower", 32, 32, size=0.5), "takes no size"),
    (lambda: preset_mask("diagonal", 32, 32), "unknown mask preset"),
])
def test_preset_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# CLI specs


@pytest.mark.parametrize("spec, expected", [
    ("upper_half", upper_half(32, 32)),
    ("lower_half", lower_half(32, 32)),
    ("centre", centre_window(32, 32, 0.25)),
    ("centre:0.5", centre_window(32, 32, 0.5)),
    ("center:16", centre_window(32, 32, 16)),
    ("outpaint", outpaint(32, 32, 0.5)),
    ("outpaint:24", outpaint(32, 32, 24)),
    ("keep_all", keep_all(32, 32)),
    ("keep_upper", upper_half(32, 32)),
    ("complete_lower", upper_half(32, 32)),
    ("keep_lower", lower_half(32, 32)),
    ("complete_upper", lower_half(32, 32)),
])
def test_parse_mask_presets(spec, expected):
    assert torch.equal(parse_mask(spec, (32, 32)), expected)


@pytest.mark.parametrize("spec, match", [
    ("centre:big", "neither a fraction"),
    ("nothing_here.png", "neither an existing file nor a preset"),
    ("", "preset name or a file path"),
    ("upper_half:3", "takes no size"),
])
def test_parse_mask_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_mask(spec, (32, 32))


# user mask files


def test_grey_mask_file_of_odd_size_is_binarised_and_resized(tmp_path):
    grey = np.zeros((21, 21), np.uint8)
    grey[:, 11:] = 200  # right part kept (above 0.5), left part edited
    grey[:, 10] = 120  # a column below 0.5 -> edited
    Image.fromarray(grey).save(tmp_path / "mask.png")
    mask = load_mask(tmp_path / "mask.png", (42, 42))
    assert mask.shape == (42, 42) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask[:, :21].sum() == 0 and mask[:, 23:].min() == 1
    # also through the CLI parser (an existing file wins)
    assert torch.equal(parse_mask(str(tmp_path / "mask.png"), (42, 42)), mask)


def test_rgba_mask_transparent_pixels_are_edited(tmp_path):
    rgba = np.full((8, 8, 4), 255, np.uint8)  # white, opaque
    rgba[4:, :, 3] = 0  # lower half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "mask.png")
    assert torch.equal(load_mask(tmp_path / "mask.png", (8, 8)), upper_half(8, 8))


def test_non_square_mask_is_centre_cropped_like_the_images():
    grey = np.zeros((10, 30), np.uint8)
    grey[:, 10:15] = 255  # left half of the centre 10x10 window
    mask = mask_from_image(Image.fromarray(grey), (4, 4))
    assert torch.equal(mask, t([[1, 1, 0, 0]] * 4))
    stretched = mask_from_image(Image.fromarray(grey), (4, 4), crop=False)
    assert stretched.sum() < mask.sum()


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "LA", "I;16"])
def test_any_image_mode_gives_a_binary_mask(mode):
    grey = np.zeros((6, 6), np.uint8)
    grey[:3] = 255
    image = Image.fromarray(grey).convert(mode) if mode != "I;16" else \
        Image.fromarray((grey.astype(np.uint16) * 257))
    assert torch.equal(mask_from_image(image, (6, 6)), upper_half(6, 6))


def test_all_keep_and_all_edit_files_are_allowed(tmp_path):
    Image.new("L", (5, 7), 255).save(tmp_path / "white.png")
    Image.new("L", (5, 7), 0).save(tmp_path / "black.png")
    assert load_mask(tmp_path / "white.png", (4, 4)).min() == 1
    assert load_mask(tmp_path / "black.png", (4, 4)).max() == 0


def test_non_image_and_missing_mask_files_fail_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read mask file .*notes.txt"):
        load_mask(tmp_path / "notes.txt", (4, 4))
    with pytest.raises(ValueError, match="cannot read mask file .*empty.png"):
        parse_mask(str(tmp_path / "empty.png"), (4, 4))
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        load_mask(tmp_path / "missing.png", (4, 4))
    with pytest.raises(TypeError, match="PIL image"):
        mask_from_image(np.ones((4, 4)), (4, 4))


def test_grey_out_sets_edited_pixels_to_mid_grey():
    images = torch.ones(2, 3, 4, 4)
    out = grey_out(images, upper_half(4, 4))
    assert torch.equal(out[:, :, :2], images[:, :, :2]) and out[:, :, 2:].abs().max() == 0
    with pytest.raises(ValueError, match="does not match"):
        grey_out(images, upper_half(8, 8))


def test_feathered_mask_fades_inside_the_kept_region_only():
    from imagebart.sampling.masks import feathered

    mask = upper_half(16, 16)
    soft = feathered(mask, 2)
    assert torch.equal(soft[8:], torch.zeros(8, 16))  # the edited half stays fully generated
    assert torch.equal(soft[:5], torch.ones(5, 16))  # far from the seam: the original
    assert 0 < soft[7, 0] < soft[6, 0] < 1  # fades towards the seam
    assert torch.equal(feathered(mask, 0), mask)
    with pytest.raises(ValueError, match="feather radius"):
        feathered(mask, -1)


def test_paste_back_keeps_original_pixels_and_generated_ones():
    from imagebart.sampling.editing import paste_back

    original, edited = torch.ones(2, 3, 16, 16), -torch.ones(2, 3, 16, 16)
    out = paste_back(original, edited, centre_window(16, 16, 0.5), feather=1)
    assert torch.equal(out[:, :, 0], original[:, :, 0])  # kept border
    assert torch.equal(out[:, :, 8, 8], edited[:, :, 8, 8])  # generated centre
    assert torch.equal(paste_back(original, edited, keep_all(16, 16), feather=0), original)
    with pytest.raises(ValueError, match="does not match"):
        paste_back(original, edited, keep_all(8, 8))
