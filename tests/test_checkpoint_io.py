"""Safe checkpoint loading: real checkpoints load, code-running pickles are refused."""

import os
import pathlib
import sys
import types
from collections import defaultdict

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from imagebart.checkpoint_io import (
    OpaqueObject,
    UnsafeCheckpointError,
    load_checkpoint,
    load_state_dict,
)


class Exploit:
    """Unpickling this would create a file: the classic __reduce__ attack."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_reference_checkpoints_load(reference_dir):
    for ckpt in sorted((reference_dir / "checkpoints").glob("*/model.ckpt")):
        sd = load_state_dict(ckpt)
        assert sd["first_stage_model.quantize.used"].dtype == torch.int64
        assert load_checkpoint(ckpt)["global_step"] == 0


def test_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": Exploit(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt.*system"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)
    assert not marker.exists()


def test_lightning_style_metadata_loads_inertly(tmp_path, monkeypatch):
    # a callback class used as a dict key, as Lightning 1.x stores it
    module = types.ModuleType("pytorch_lightning.callbacks.fake_for_test")
    ran = []

    class ModelCheckpoint:
        def __setstate__(self, state):
            ran.append(state)

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, module.__name__, module)
    sd = {"layer.weight": torch.randn(2, 2)}
    hp = defaultdict(list, a=[1])
    ckpt = {
        "state_dict": sd,
        "callbacks": {ModelCheckpoint: {"best_model_path": pathlib.PosixPath("/x/y.ckpt"),
                                        "best_model_score": np.float64(0.5)}},
        "hyper_parameters": OmegaConf.create({"lr": 1e-4, "nested": {"k": [1, 2]}}),
        "extra": hp,
        "obj": ModelCheckpoint(),
    }
    path = tmp_path / "lightning.ckpt"
    torch.save(ckpt, path)
    monkeypatch.delitem(sys.modules, module.__name__)  # the class is not even importable now

    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["state_dict"]["layer.weight"], sd["layer.weight"])
    assert isinstance(loaded["hyper_parameters"], OpaqueObject)
    assert isinstance(loaded["obj"], OpaqueObject) and not ran
    assert loaded["extra"] == {"a": [1]}
    torch.testing.assert_close(load_state_dict(path)["layer.weight"], sd["layer.weight"])


def test_plain_state_dict_and_errors(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"a": torch.zeros(3)}, path)
    assert list(load_state_dict(path)) == ["a"]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {"a": 1}}, path)
    with pytest.raises(ValueError, match="sd.pt"):
        load_state_dict(path)
