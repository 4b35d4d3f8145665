"""instantiate_from_config, the legacy-target alias table and their error messages."""

import importlib

import numpy as np
import pytest
import torch

from imagebart.modules.conditioners import ClassProvider
from imagebart.util import (LEGACY_TARGETS, check_positive_int, get_obj_from_str, instantiate_from_config,
                            is_integer)


def test_instantiate_builds_target_with_params():
    layer = instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_features": 3, "out_features": 2}})
    assert isinstance(layer, torch.nn.Linear) and layer.weight.shape == (2, 3)


def test_extra_params_override():
    layer = instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_features": 3, "out_features": 2}},
                                    out_features=5)
    assert layer.weight.shape == (5, 3)


def test_original_sentinels_return_none():
    assert instantiate_from_config("__is_first_stage__") is None
    assert instantiate_from_config("__is_unconditional__") is None


def test_unknown_module_and_attribute_are_named():
    with pytest.raises(ValueError, match="unknown target 'nopackage.Thing'"):
        get_obj_from_str("nopackage.Thing")
    with pytest.raises(ValueError, match="has no attribute 'Linearr'"):
        get_obj_from_str("torch.nn.Linearr")


def test_missing_target_and_unknown_keys():
    with pytest.raises(ValueError, match="'target'"):
        instantiate_from_config({"params": {}})
    with pytest.raises(ValueError, match=r"unknown keys \['parms'\]"):
        instantiate_from_config({"target": "torch.nn.Identity", "parms": {}})


def test_misspelled_param_names_the_target():
    with pytest.raises(TypeError, match="torch.nn.Linear"):
        instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_feature": 3, "out_features": 2}})


@pytest.mark.parametrize("legacy, ours", sorted(LEGACY_TARGETS.items()))
def test_every_alias_points_at_an_importable_class(legacy, ours):
    module_name, _, attr = ours.rpartition(".")
    module = importlib.import_module(module_name)
    assert hasattr(module, attr), f"{legacy} -> {ours}: {module_name} has no {attr}"
    assert get_obj_from_str(legacy) is getattr(module, attr)


def test_aliases_do_not_shadow_taming():
    # the real taming package keeps its own modules; only our table redirects config targets
    quantize = importlib.import_module("taming.modules.vqvae.quantize")
    assert quantize.__name__ == "taming.modules.vqvae.quantize"
    assert "taming.modules.vqvae.quantize.VectorQuantizer2" not in LEGACY_TARGETS


def test_class_provider():
    tokens = ClassProvider(key="class_label")({"class_label": torch.tensor([3, 1])})
    assert tokens.tolist() == [[3], [1]]
    with pytest.raises(KeyError, match="class_label"):
        ClassProvider()({"image": torch.zeros(1)})


def test_original_class_provider_target_resolves_through_the_alias_table():
    assert get_obj_from_str("imagebart.util.ClassProvider") is ClassProvider
    provider = instantiate_from_config({"target": "imagebart.util.ClassProvider", "params": {"key": "label"}})
    assert provider({"label": torch.tensor([2])}).tolist() == [[2]]


@pytest.mark.parametrize("value, expected", [(3, True), (np.int64(3), True), (True, False), (3.0, False),
                                             ("3", False), (None, False)])
def test_is_integer(value, expected):
    assert is_integer(value) is expected


def test_check_positive_int_names_the_argument():
    assert check_positive_int("n", 4) == 4
    assert check_positive_int("offset", 0, minimum=0) == 0
    for bad in (0, -1, 2.5, True, "2"):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            check_positive_int("batch_size", bad)
