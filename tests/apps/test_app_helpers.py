"""The apps' streamlit-free logic: config path, schedules, uploads, masks, dataset examples, display."""

import io

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tiny_chain import IMAGE_SIZE, SIDE, write_chain

from imagebart.apps.controls import (
    CONFIG_ENV, build_schedule, class_label_value, config_path_from, fingerprint, format_values, runs_seeds,
    threads_from,
)
from imagebart.apps.display import enlarge, frame, grid_array, mask_array, png_bytes
from imagebart.apps.examples import class_names, example_image, validation_examples
from imagebart.apps.uploads import UploadError, check_mask, mask_from_drawing, read_image_upload, read_mask_upload
from imagebart.cli.common import parse_scale_values
from imagebart.sampling.masks import centre_window, keep_all, edit_all

SCRIPT = "scripts/sample_imagebart.py"


def png(array, mode=None, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=fmt)
    return buffer.getvalue()


# config path


@pytest.mark.parametrize("argv, env, expected", [
    ([SCRIPT, "cfg.yaml"], {}, "cfg.yaml"),
    ([SCRIPT, "--", "cfg.yaml"], {CONFIG_ENV: "env.yaml"}, "cfg.yaml"),  # the command line wins
    ([SCRIPT, "--config", "c.yaml"], {}, "c.yaml"),
    ([SCRIPT], {CONFIG_ENV: "env.yaml"}, "env.yaml"),
    (["/usr/bin/pytest", "tests/apps"], {CONFIG_ENV: "env.yaml"}, "env.yaml"),  # AppTest: argv is pytest's
    (["/usr/bin/pytest", "tests/apps"], {}, None),
    ([], {}, None),
])
def test_config_path(argv, env, expected):
    assert config_path_from(argv, SCRIPT, env) == expected


# schedules


def test_schedules_in_sampling_order():
    assert build_schedule("per scale", 3, True, "top-k", text="100, 50,10") == [100, 50, 10]
    assert build_schedule("per scale", 2, False, "temperature", text="1,0.5") == [1.0, 0.5]
    assert build_schedule("constant", 3, True, "top-k", constant=7) == [7, 7, 7]
    assert build_schedule("linear", 3, True, "top-k", start=100, end=20) == [100, 60, 20]
    assert build_schedule("linear", 3, False, "temperature", start=1.0, end=0.5) == [1.0, 0.75, 0.5]
    assert build_schedule("per scale", 2, True, "top-k", text="5.0, 3") == [5, 3]  # whole numbers as floats
    assert format_values([256, 10]) == "256, 10" and format_values([1.0, 0.25]) == "1, 0.25"


@pytest.mark.parametrize("mode, kwargs, message", [
    ("per scale", {"text": "1,2"}, "expected 3 values"),
    ("per scale", {"text": "1,x,3"}, "'x' is not a number"),
    ("per scale", {"text": "1,,3"}, "empty entry"),
    ("per scale", {"text": "  "}, "enter one number per scale"),
    ("per scale", {"text": "1,2.5,3"}, "not a whole number"),
    ("per scale", {"text": "1,nan,3"}, "not a finite number"),
    ("linear", {"start": "a", "end": 1}, "not a number"),
    ("sideways", {}, "schedule mode"),
])
def test_schedule_errors_name_the_problem(mode, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_schedule(mode, 3, True, "top-k", **kwargs)


def test_parse_values_and_labels_and_seeds():
    assert parse_scale_values("0.5", "t") == [0.5]
    assert class_label_value("random") == "random" and class_label_value("label", 3) == 3
    with pytest.raises(ValueError, match="whole number"):
        class_label_value("label", 2.5)
    assert runs_seeds(4, 3, lambda s, i: 10 * s + i) == [40, 41, 42]
    with pytest.raises(ValueError, match="number of runs"):
        runs_seeds(0, 0, lambda s, i: 0)
    with pytest.raises(ValueError, match="seed"):
        runs_seeds(-1, 1, lambda s, i: 0)


# uploads


def test_image_upload_rgb_square_needs_no_notes():
    rgb = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    prepared = read_image_upload(png(rgb), IMAGE_SIZE)
    assert prepared.value.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE) and prepared.notes == []
    expected = torch.from_numpy(rgb / 127.5 - 1.0).permute(2, 0, 1).float()
    assert torch.allclose(prepared.value[0], expected, atol=1e-6)


def test_image_upload_alpha_is_flattened_onto_white_with_a_warning():
    rgba = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, transparent in the left half
    rgba[:, IMAGE_SIZE // 2:, 3] = 255
    prepared = read_image_upload(png(rgba, "RGBA"), IMAGE_SIZE)
    assert any("transparent pixels" in m for m in prepared.messages("warning"))
    image = prepared.value[0]  # (3, H, W)
    assert torch.allclose(image[:, :, 0], torch.ones(3, IMAGE_SIZE))  # white where transparent
    assert torch.allclose(image[:, :, -1], torch.tensor([1.0, -1.0, -1.0])[:, None].expand(3, IMAGE_SIZE))


def test_an_opaque_alpha_channel_is_dropped_without_a_note():
    rgba = np.random.default_rng(2).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    prepared = read_image_upload(png(rgba, "RGBA"), IMAGE_SIZE)
    assert prepared.notes == []
    expected = torch.from_numpy(rgba[..., :3] / 127.5 - 1.0).permute(2, 0, 1).float()
    assert torch.allclose(prepared.value[0], expected, atol=1e-6)


def test_image_upload_odd_size_is_cropped_and_resized_with_notes():
    odd = np.random.default_rng(1).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    prepared = read_image_upload(png(odd, fmt="JPEG"), IMAGE_SIZE)
    assert prepared.value.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert any("not square" in m for m in prepared.messages("warning"))
    assert any("resized from 23x23" in m for m in prepared.messages("info"))
    grey = read_image_upload(png(odd[..., 0], "L"), IMAGE_SIZE)  # grey images become RGB
    assert grey.value.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is not a picture at all", "not an image"),
    (png(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))[:400], "not an image"),
], ids=["empty", "text", "truncated_png"])
def test_bad_uploads_raise_upload_error(data, message):
    with pytest.raises(UploadError, match=message) as info:
        read_image_upload(data, IMAGE_SIZE, name="x.png")
    assert "BytesIO" not in str(info.value) and "x.png" in str(info.value)
    with pytest.raises(UploadError, match=message):
        read_mask_upload(data, IMAGE_SIZE, name="x.png")


def test_mask_upload_any_size_binarised():
    mask = np.full((40, 40), 255, np.uint8)
    mask[:20] = 10  # top half black: generate it
    prepared = read_mask_upload(png(mask), IMAGE_SIZE)
    assert prepared.value.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert set(prepared.value.unique().tolist()) == {0.0, 1.0}
    assert prepared.value[: IMAGE_SIZE // 2].sum() == 0 and prepared.value[IMAGE_SIZE // 2:].min() == 1
    assert prepared.messages("info")


def test_check_mask_on_the_token_grid():
    latent = (SIDE, SIDE)
    assert check_mask(keep_all(IMAGE_SIZE, IMAGE_SIZE), latent).problem.startswith("the mask keeps every token")
    tiny_hole = keep_all(IMAGE_SIZE, IMAGE_SIZE)
    tiny_hole[5, 5] = 0  # one pixel: nearest resizing to 4x4 never samples it
    assert "smaller than one token" in check_mask(tiny_hole, latent).problem
    everything = check_mask(edit_all(IMAGE_SIZE, IMAGE_SIZE), latent)
    assert everything.ok and "plain sampling" in everything.note and everything.edit_tokens == SIDE * SIDE
    window = check_mask(centre_window(IMAGE_SIZE, IMAGE_SIZE, 0.5), latent)
    assert window.ok and window.note is None and window.edit_tokens == 4


# dataset examples


def test_validation_examples_from_the_scale1_config(tmp_path):
    sampling = write_chain(tmp_path / "chain")
    no_data = validation_examples(sampling)
    assert no_data.dataset is None and "no data.params.validation" in no_data.reason
    with pytest.raises(ValueError, match="no dataset examples"):
        example_image(no_data, 0, IMAGE_SIZE)

    scale1 = tmp_path / "chain" / "scale1.yaml"
    config = OmegaConf.load(scale1)
    config.data = {"target": "main.DataModuleFromConfig", "params": {"validation": {
        "target": "imagebart.data.demo.DemoScenes", "params": {"split": "validation", "size": 24, "length": 5}}}}
    OmegaConf.save(config, scale1)
    examples = validation_examples(sampling)
    assert len(examples) == 5
    image = example_image(examples, 2, IMAGE_SIZE)  # 24 px items resized to the chain's 16
    assert image.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE) and image.min() >= -1 and image.max() <= 1
    assert class_names(examples, 4) == ["circle", "square", "triangle", "cross"]
    assert class_names(examples, 10) is None
    with pytest.raises(ValueError, match="0..4"):
        example_image(examples, 5, IMAGE_SIZE)

    config.data.params.validation.target = "imagebart.data.ffhq.FFHQValidation"
    config.data.params.validation.params = {"root": str(tmp_path / "missing")}
    OmegaConf.save(config, scale1)
    missing = validation_examples(sampling)
    assert missing.dataset is None and "did not load" in missing.reason


def test_display_helpers():
    images = torch.zeros(3, 3, 4, 4)
    images[1] = 1.0
    grid = grid_array(images, nrow=3, padding=1)
    assert grid.shape == (6, 16, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 6:10] == 255).all() and (grid[1:5, 1:5] == 128).all()
    big = enlarge(grid, tile=4, min_side=10)  # factor 3
    assert big.shape == (18, 48, 3) and (big[::3, ::3] == grid).all()
    assert mask_array(torch.tensor([[1.0, 0.0]])).tolist() == [[255, 0]]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(grid)))), grid)
    framed = frame(np.full((2, 3), 255, np.uint8), width=1, value=7)
    assert framed.shape == (4, 5) and framed[0].tolist() == [7] * 5 and (framed[1:3, 1:4] == 255).all()


def test_threads_from_the_apps_command_line(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("")
    assert threads_from([str(script), "demo.yaml", "--", "--threads", "2"], script) == 2
    assert config_path_from([str(script), "--threads", "2", "demo.yaml"], script, environ={}) == "demo.yaml"
    assert threads_from([str(script), "demo.yaml"], script) is None
    assert threads_from(["pytest"], script) is None  # someone else's command line
    with pytest.raises(ValueError, match="--threads must be a positive integer, got '0'"):
        threads_from([str(script), "--threads", "0"], script)


def test_fingerprints_tell_inputs_apart():
    image = torch.zeros(1, 3, 4, 4)
    assert fingerprint("a.yaml", image, {"seed": 0}) == fingerprint("a.yaml", image.clone(), {"seed": 0})
    assert fingerprint("a.yaml", image, {"seed": 0}) != fingerprint("a.yaml", image, {"seed": 1})
    changed = image.clone()
    changed[0, 0, 0, 0] = 1
    assert fingerprint("a.yaml", image) != fingerprint("a.yaml", changed)


def test_a_brush_drawing_becomes_a_mask_where_half_a_pixel_is_painted():
    drawing = np.zeros((64, 64, 4), np.uint8)  # the canvas, 4 canvas pixels per image pixel and side
    assert mask_from_drawing(drawing, 16) is None  # nothing painted yet
    drawing[:32, :32, 3] = 153  # the upper-left quarter painted (a semi-transparent brush)
    drawing[40:42, 40:44, 3] = 255  # half of image pixel (10, 10): generated
    drawing[48:49, 48:52, 3] = 255  # a quarter of image pixel (12, 12): kept
    mask = mask_from_drawing(drawing, 16)
    assert mask.shape == (16, 16) and mask.dtype == torch.float32
    expected = torch.ones(16, 16)
    expected[:8, :8] = 0
    expected[10, 10] = 0
    assert torch.equal(mask, expected)
    with pytest.raises(UploadError, match="RGBA drawing"):
        mask_from_drawing(np.zeros((4, 4, 3), np.uint8), 2)
