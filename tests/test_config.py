"""Config merging, command-line overrides and the checks that name the offending key."""

import pytest
from omegaconf import OmegaConf

from imagebart.config import ConfigError, check_training_config, merge_configs, parse_overrides


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def two_configs(tmp_path):
    a = write(tmp_path / "a.yaml", "model:\n  base_learning_rate: 1.0\n  target: x.Y\n  params:\n    dim: 8\n    depth: 2\n"
              "data:\n  target: main.DataModuleFromConfig\n  params:\n    batch_size: 4\n")
    b = write(tmp_path / "b.yaml", "model:\n  params:\n    dim: 16\n")
    return a, b


def test_merge_left_to_right_then_overrides(two_configs):
    a, b = two_configs
    config = merge_configs([a, b], ["model.params.depth=5", "data.params.batch_size=2"])
    assert config.model.params.dim == 16  # b wins over a
    assert config.model.params.depth == 5  # the command line wins over both
    assert config.data.params.batch_size == 2
    assert config.model.target == "x.Y"


def test_override_adds_new_nested_keys(two_configs):
    config = merge_configs(list(two_configs), ["lightning.trainer.max_steps=3"])
    assert config.lightning.trainer.max_steps == 3


@pytest.mark.parametrize("bad", ["--foo", "model.params.dim", "=3"])
def test_bad_override_is_named(bad):
    with pytest.raises(ConfigError, match="cannot understand"):
        parse_overrides([bad])


def test_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="not found: .*nope.yaml"):
        merge_configs([tmp_path / "nope.yaml"])
    bad = write(tmp_path / "bad.yaml", "model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        merge_configs([bad])
    scalar = write(tmp_path / "scalar.yaml", "3\n")
    with pytest.raises(ConfigError, match="mapping"):
        merge_configs([scalar])


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: {target: a.B, base_learning_rate: 1}\ndata: {target: c.D, params: {batch_size: 1}}\nmodle: {}\n",
         "unknown top-level config key"),
        ("data: {target: c.D, params: {batch_size: 1}}\n", "no 'model' section"),
        ("model: {params: {}, base_learning_rate: 1}\ndata: {target: c.D, params: {batch_size: 1}}\n",
         "'model' needs a 'target'"),
        ("model: {target: a.B}\ndata: {target: c.D, params: {batch_size: 1}}\n", "model.base_learning_rate"),
        ("model: {target: a.B, base_learning_rate: 1}\ndata: {target: c.D, params: {}}\n", "data.params.batch_size"),
        ("model: {target: a.B, base_learning_rate: 1}\ndata: {target: c.D, params: {batch_size: 1}}\n"
         "lightning: {trainr: {}}\n", "under 'lightning'"),
    ],
)
def test_training_config_checks(text, message):
    with pytest.raises(ConfigError, match=message):
        check_training_config(OmegaConf.create(text), ["cfg.yaml"])
