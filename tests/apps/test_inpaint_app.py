"""scripts/inpaint_imagebart.py under streamlit's AppTest on a tiny chain (config via the env var)."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_chain import IMAGE_SIZE, with_demo_validation, write_chain

from imagebart.apps.controls import CONFIG_ENV
from imagebart.apps.examples import example_image, validation_examples

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "inpaint_imagebart.py"
TIMEOUT = 60
CENTRE = "inpaint a centre window"
needs_uploads = pytest.mark.skipif(not hasattr(AppTest, "file_uploader"),
                                   reason="this streamlit's AppTest cannot drive st.file_uploader (older releases); "
                                          "the upload checks are covered by test_app_helpers.py")
UPLOAD_MASK = "upload a mask"


@pytest.fixture(scope="module")
def demo_yaml(tmp_path_factory):
    """The tiny chain, with DemoScenes as scale 1's validation data (as the demo chain's config has)."""
    return with_demo_validation(write_chain(tmp_path_factory.mktemp("inpaint_app_chain")))


@pytest.fixture(scope="module")
def bare_yaml(tmp_path_factory):
    """The tiny chain without a data section: uploads only."""
    return write_chain(tmp_path_factory.mktemp("inpaint_app_bare"))


def app(monkeypatch, config) -> AppTest:
    monkeypatch.setenv(CONFIG_ENV, str(config))
    return AppTest.from_file(str(SCRIPT), default_timeout=TIMEOUT).run()


def errors(at) -> list:
    return [e.value for e in at.error]


def png(array, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_demo_example_with_preset_mask_produces_samples(monkeypatch, demo_yaml):
    at = app(monkeypatch, demo_yaml)
    assert not at.exception and not errors(at)
    assert at.radio(key="image_source").options == ["dataset example", "upload an image"]
    assert [at.number_input(key=f"chain_length_{t}").value for t in (3, 2, 1)] == [3, 3, 3]  # geometric
    at.number_input(key="example_index").set_value(3)
    at.selectbox(key="mask_preset").set_value(CENTRE).run()
    assert at.slider(key="window").value == IMAGE_SIZE // 4  # the original's default, one token here
    at.slider(key="window").set_value(IMAGE_SIZE // 2)
    at.number_input(key="batch_size").set_value(2)
    at.number_input(key="chain_length_3").set_value(1)
    at.number_input(key="chain_length_2").set_value(2)
    at.number_input(key="chain_length_1").set_value(1)
    at.run()
    assert not at.exception and not errors(at)
    assert any("4 of 16 tokens are generated" in c.value for c in at.caption)  # half-side window: 2x2 tokens
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    rows = at.session_state["inpaint_result"]["rows"]
    assert len(rows) == 1 and rows[0].shape == (2 + 2, 3, IMAGE_SIZE, IMAGE_SIZE)  # original, masked, 2 samples
    expected = example_image(validation_examples(demo_yaml), 3, IMAGE_SIZE)[0]
    assert torch.equal(rows[0][0], expected)
    assert at.download_button(key="download_grid") is not None
    assert any("original | masked input | 2 samples" in c for image in at.image for c in image.captions)


@needs_uploads
def test_non_image_upload_shows_an_error(monkeypatch, demo_yaml):
    at = app(monkeypatch, demo_yaml)
    at.radio(key="image_source").set_value("upload an image").run()
    assert not at.exception and at.button(key="sample").disabled  # nothing uploaded yet
    at.file_uploader(key="image_upload").set_value(("notes.png", b"definitely not a picture", "image/png")).run()
    assert not at.exception
    assert any("not an image" in e for e in errors(at)), errors(at)
    assert at.button(key="sample").disabled


@needs_uploads
def test_rgba_odd_size_upload_warns_and_edits(monkeypatch, bare_yaml):
    at = app(monkeypatch, bare_yaml)
    assert at.radio(key="image_source").options == ["upload an image"]  # no dataset in this config
    assert any("No dataset examples" in i.value for i in at.info)
    rgba = np.random.default_rng(0).integers(0, 256, (23, 37, 4), dtype=np.uint8)
    at.file_uploader(key="image_upload").set_value(("odd.png", png(rgba, "RGBA"), "image/png")).run()
    assert not at.exception and not errors(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "transparent pixels" in warnings and "not square" in warnings
    at.number_input(key="batch_size").set_value(1)
    for t in (1, 2, 3):
        at.number_input(key=f"chain_length_{t}").set_value(1)
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    assert at.session_state["inpaint_result"]["rows"][0].shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)


@needs_uploads
def test_mask_uploads(monkeypatch, demo_yaml):
    at = app(monkeypatch, demo_yaml)
    at.selectbox(key="mask_preset").set_value(UPLOAD_MASK).run()
    assert not at.exception and at.button(key="sample").disabled
    # all white: keeps every token, nothing to edit
    at.file_uploader(key="mask_upload").set_value(("white.png", png(np.full((40, 40), 255, np.uint8)),
                                                   "image/png")).run()
    assert not at.exception and any("nothing to edit" in w.value for w in at.warning)
    assert at.button(key="sample").disabled
    # not an image
    at.file_uploader(key="mask_upload").set_value(("mask.png", b"\x00\x01garbage", "image/png")).run()
    assert not at.exception and any("not an image" in e for e in errors(at))
    assert at.button(key="sample").disabled
    # all black: plain sampling, allowed with a note
    at.file_uploader(key="mask_upload").set_value(("black.png", png(np.zeros((8, 8), np.uint8)),
                                                   "image/png")).run()
    assert not at.exception and not errors(at) and any("plain sampling" in i.value for i in at.info)
    assert not at.button(key="sample").disabled


@needs_uploads
def test_class_guided_editing_on_a_conditional_chain(monkeypatch, tmp_path):
    at = app(monkeypatch, write_chain(tmp_path / "cond", conditional=True))
    rgb = np.random.default_rng(2).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    at.file_uploader(key="image_upload").set_value(("rgb.png", png(rgb), "image/png")).run()
    at.selectbox(key="class_label").set_value(6)
    at.number_input(key="batch_size").set_value(2)
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    assert at.session_state["inpaint_result"]["labels"] == [6, 6]


def test_guided_editing(monkeypatch, tmp_path):
    at = app(monkeypatch, write_chain(tmp_path / "guided", conditional=True, cond_drop_prob=0.1))
    rgb = np.random.default_rng(3).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    at.file_uploader(key="image_upload").set_value(("rgb.png", png(rgb), "image/png")).run()
    at.radio(key="guidance_scale_mode").set_value("constant").run()
    at.number_input(key="guidance_scale_constant").set_value(2.5).run()
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    assert at.session_state["inpaint_result"]["settings"]["guidance_scale"] == [2.5] * 3


def test_text_guided_editing(monkeypatch, tmp_path):
    at = app(monkeypatch, write_chain(tmp_path / "text", text=True, cond_drop_prob=0.1))
    rgb = np.random.default_rng(4).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    at.file_uploader(key="image_upload").set_value(("rgb.png", png(rgb), "image/png")).run()
    at.text_area(key="caption").set_value("two small triangles")
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    assert at.session_state["inpaint_result"]["settings"]["caption"] == "two small triangles"


@needs_uploads
def test_results_of_earlier_inputs_are_marked_and_wrong_files_named(monkeypatch, demo_yaml):
    at = app(monkeypatch, demo_yaml)
    at.number_input(key="batch_size").set_value(1)
    for t in (1, 2, 3):
        at.number_input(key=f"chain_length_{t}").set_value(1)
    at.button(key="sample").click().run()
    assert not at.exception and not at.warning  # fresh results: nothing to warn about
    at.selectbox(key="mask_preset").set_value(CENTRE).run()  # a new mask
    assert any("earlier inputs" in w.value for w in at.warning)
    assert any(c.startswith("earlier inputs, run 1") for image in at.image for c in image.captions)
    # a failed upload keeps them marked too, and its message names the file, not a buffer
    at.radio(key="image_source").set_value("upload an image").run()
    at.file_uploader(key="image_upload").set_value(("notes.txt", b"shopping list", "text/plain")).run()
    assert not at.exception
    assert any("'notes.txt' is not an image" in e and "png" in e and "BytesIO" not in e for e in errors(at))
    assert any("earlier inputs" in w.value for w in at.warning)


def test_threads_control_sets_torch_threads(monkeypatch, demo_yaml):
    before = torch.get_num_threads()
    try:
        at = app(monkeypatch, demo_yaml)
        assert at.number_input(key="threads").value == before  # torch's default
        at.number_input(key="threads").set_value(1).run()
        assert not at.exception and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_brush_asks_for_an_image_and_then_for_paint(monkeypatch, demo_yaml):
    """AppTest cannot paint on the canvas (a browser component); the browser test does (tests/browser)."""
    at = app(monkeypatch, demo_yaml)
    at.selectbox(key="mask_preset").set_value("draw the region to generate with a brush").run()
    assert not at.exception and not errors(at)
    assert any("Paint over the region to generate" in i.value for i in at.info)
    assert at.slider(key="brush_width").value == 24
    assert at.button(key="sample").disabled  # nothing painted: nothing to edit
