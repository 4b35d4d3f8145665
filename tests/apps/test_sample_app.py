"""scripts/sample_imagebart.py under streamlit's AppTest on a tiny chain (config via the env var)."""

from pathlib import Path

import pytest
import torch

from tiny_chain import IMAGE_SIZE, K, T, write_chain

from imagebart.apps.controls import CONFIG_ENV
from imagebart.sampling.batch import batch_seed
from imagebart.sampling.chain import ImageBARTChain

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sample_imagebart.py"
TIMEOUT = 60  # seconds per script run (the first one loads the chain)


@pytest.fixture(scope="module")
def sampling_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("app_chain"))


@pytest.fixture(scope="module")
def cond_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("app_cond_chain"), conditional=True)


def app(monkeypatch, config) -> AppTest:
    monkeypatch.setenv(CONFIG_ENV, str(config))
    return AppTest.from_file(str(SCRIPT), default_timeout=TIMEOUT).run()


def errors(at) -> list:
    return [e.value for e in at.error]


def test_page_renders(monkeypatch, sampling_yaml):
    at = app(monkeypatch, sampling_yaml)
    assert not at.exception and not errors(at)
    assert at.title[0].value.startswith("ImageBART")
    assert at.text_input(key="sampling_config").value == str(sampling_yaml)
    assert at.text_input(key="top_k_text").value == ", ".join([str(K)] * T)  # config top_k capped at K
    assert not at.button(key="sample").disabled
    assert len(at.image) == 0  # nothing sampled yet


def test_sample_produces_the_chain_samples(monkeypatch, sampling_yaml):
    at = app(monkeypatch, sampling_yaml)
    at.number_input(key="batch_size").set_value(2)
    at.number_input(key="seed").set_value(5)
    at.text_input(key="top_k_text").set_value("8, 12, 20")
    at.checkbox(key="show_chain").check()
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    assert len(at.image) == 2  # the samples grid and the chain x_T .. x_0
    assert "2 samples" in at.image[0].captions[0] and "x_3, x_2, x_1, x_0" in at.image[1].captions[0]
    assert at.download_button(key="download_grid") is not None
    result = at.session_state["sample_result"]
    assert result["images"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and result["steps"].shape[0] == T + 1
    # the page shows exactly what the library samples for (seed, run 0)
    chain = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    generator = chain.make_generator(batch_seed(5, 0))
    expected = chain.sample(2, top_k=[8, 12, 20], temperature=1.0, generator=generator)
    assert torch.equal(result["images"], expected.images)


@pytest.mark.parametrize("key, value, message", [
    ("top_k_text", "10, 20", "expected 3 values"),
    ("top_k_text", "10, -5, 20", ">= 1"),
    ("top_k_text", "10, ten, 20", "'ten' is not a number"),
    ("temperature_text", "1, 0, 1", "> 0"),
])
def test_bad_schedule_shows_an_error(monkeypatch, sampling_yaml, key, value, message):
    at = app(monkeypatch, sampling_yaml)
    at.text_input(key=key).set_value(value).run()
    assert not at.exception
    assert any(message in e for e in errors(at)), errors(at)
    assert at.button(key="sample").disabled
    at.text_input(key=key).set_value(", ".join(["3"] * T)).run()  # fixed: the app carries on
    assert not at.exception and not errors(at) and not at.button(key="sample").disabled


def test_negative_constant_top_k(monkeypatch, sampling_yaml):
    at = app(monkeypatch, sampling_yaml)
    at.radio(key="top_k_mode").set_value("constant").run()
    at.number_input(key="top_k_constant").set_value(-3).run()
    assert not at.exception and any(">= 1" in e for e in errors(at))


@pytest.mark.parametrize("config, message", [(None, "No sampling config"), ("missing.yaml", "not found")])
def test_missing_config_shows_an_error(monkeypatch, tmp_path, config, message):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    if config is not None:
        monkeypatch.setenv(CONFIG_ENV, str(tmp_path / config))
    at = AppTest.from_file(str(SCRIPT), default_timeout=TIMEOUT).run()
    assert not at.exception and any(message in e for e in errors(at))


def test_invalid_config_shows_an_error(monkeypatch, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("checkpoints: [nowhere.ckpt]\nconfigs: [nowhere.yaml]\n")
    at = app(monkeypatch, bad)
    assert not at.exception and any("Cannot load the chain" in e for e in errors(at))


def test_class_picker_for_conditional_chains(monkeypatch, cond_yaml):
    at = app(monkeypatch, cond_yaml)
    assert not at.exception and not errors(at)
    at.selectbox(key="class_label").set_value(7)
    at.number_input(key="batch_size").set_value(2)
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    assert at.session_state["sample_result"]["labels"] == [7, 7]
    at.radio(key="class_mode").set_value("random")
    at.button(key="sample").click().run()
    assert not at.exception and len(at.session_state["sample_result"]["labels"]) == 2


def test_guidance_schedule_for_guided_chains(monkeypatch, tmp_path, cond_yaml):
    guided = write_chain(tmp_path / "guided", conditional=True, cond_drop_prob=0.1)
    at = app(monkeypatch, guided)
    assert at.text_input(key="guidance_scale_text").value == ", ".join(["1"] * T)
    at.selectbox(key="class_label").set_value(2)
    at.number_input(key="batch_size").set_value(2)
    at.text_input(key="guidance_scale_text").set_value("3, 2, 1")
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    chain = ImageBARTChain.from_sampling_config(guided, device="cpu")
    expected = chain.sample(2, class_label=2, guidance_scale=[3, 2, 1], generator=chain.make_generator(batch_seed(0, 0)))
    assert torch.equal(at.session_state["sample_result"]["images"], expected.images)
    at.text_input(key="guidance_scale_text").set_value("3, -2, 1").run()
    assert any(">= 0" in e for e in errors(at)) and at.button(key="sample").disabled
    # a class chain trained without dropout offers no guidance and says why
    plain = app(monkeypatch, cond_yaml)
    assert not plain.exception and not errors(plain)
    assert not [w for w in plain.text_input if w.key == "guidance_scale_text"]
    assert any("without cond_drop_prob" in c.value for c in plain.caption)


def test_caption_box_for_text_chains(monkeypatch, tmp_path):
    text = write_chain(tmp_path / "text", text=True, cond_drop_prob=0.1)
    at = app(monkeypatch, text)
    assert not at.exception and not errors(at)
    at.text_area(key="caption").set_value("a large green cross")
    at.number_input(key="batch_size").set_value(2)
    at.button(key="sample").click().run()
    assert not at.exception and not errors(at)
    chain = ImageBARTChain.from_sampling_config(text, device="cpu")
    expected = chain.sample(2, caption="a large green cross", generator=chain.make_generator(batch_seed(0, 0)))
    assert torch.equal(at.session_state["sample_result"]["images"], expected.images)
    at.text_area(key="caption").set_value("   ").run()
    assert any("Enter a caption" in e for e in errors(at)) and at.button(key="sample").disabled
