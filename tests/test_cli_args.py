"""main.py's command line (imagebart.cli.train): --gpus, trainer options and resume paths."""

import pytest
from omegaconf import OmegaConf

from imagebart.config import ConfigError
from imagebart.cli.train import get_parser
from imagebart.train import num_processes, parse_gpus, resolve_resume


@pytest.mark.parametrize(
    "gpus, expected",
    [
        (None, {"accelerator": "cpu", "devices": 1}),
        ("", {"accelerator": "cpu", "devices": 1}),
        ("0", {"accelerator": "cpu", "devices": 1}),
        ("0,", {"accelerator": "gpu", "devices": [0]}),
        ("0,1", {"accelerator": "gpu", "devices": [0, 1]}),
        ("1,3,", {"accelerator": "gpu", "devices": [1, 3]}),
        ("2", {"accelerator": "gpu", "devices": 2}),
        (OmegaConf.create([0, 1]), {"accelerator": "gpu", "devices": [0, 1]}),
    ],
)
def test_parse_gpus(gpus, expected):
    assert parse_gpus(gpus) == expected


def test_parse_gpus_rejects_garbage():
    with pytest.raises(ConfigError, match="--gpus"):
        parse_gpus("a,b")


@pytest.mark.parametrize(
    "settings, n", [({"devices": [0, 1]}, 2), ({"devices": 3, "num_nodes": 2}, 6), ({"devices": "0,1,"}, 2), ({}, 1)]
)
def test_num_processes(settings, n):
    assert num_processes(settings) == n


def test_parser_defaults_match_the_original():
    opt, unknown = get_parser().parse_known_args(["--base", "a.yaml", "-t", "--seed", "23", "model.params.x=1"])
    assert opt.base == ["a.yaml"] and opt.train is True
    assert opt.seed == 23 and opt.logdir == "logs" and opt.scale_lr is True and opt.no_test is False
    assert unknown == ["model.params.x=1"]
    opt, _ = get_parser().parse_known_args(["--max_steps", "7", "--limit_val_batches", "0.5", "--precision", "bf16"])
    assert opt.max_steps == 7 and opt.limit_val_batches == 0.5 and opt.precision == "bf16"


def test_resolve_resume(tmp_path):
    run = tmp_path / "2026-01-01T00-00-00_demo"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        resolve_resume(str(run))
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_resume(str(run)) == (run, run / "checkpoints" / "last.ckpt")
    assert resolve_resume(str(run / "checkpoints" / "last.ckpt")) == (run, run / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="no such run"):
        resolve_resume(str(tmp_path / "missing"))
