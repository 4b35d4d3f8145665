"""scripts/guidance_table.py end to end on a tiny guided class chain with a tiny real classifier."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from tiny_chain import N_CLASSES, write_chain
from tiny_classifier import TinyClassifier

from imagebart.cli.guidance_table import main


def test_table_rows_files_and_acceptance_raises_the_classifier_score(tmp_path, capsys):
    config = write_chain(tmp_path / "chain", conditional=True, cond_drop_prob=0.1)
    torch.save({"state_dict": TinyClassifier(N_CLASSES).state_dict()}, tmp_path / "tiny.ckpt")
    OmegaConf.save(OmegaConf.create({"target": "tiny_classifier.TinyClassifier", "params": {"n_classes": N_CLASSES},
                                     "ckpt_path": str(tmp_path / "tiny.ckpt")}), tmp_path / "tiny.yaml")
    out = tmp_path / "table.json"
    assert main(["--config", str(config), "--classifier", str(tmp_path / "tiny.yaml"), "-n", "20",
                 "--guidance_scales", "1,3", "--acceptance_rates", "1,0.2", "--batch_size", "10", "--device", "cpu",
                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["setting"], r["value"]) for r in rows] == [("acceptance_rate", 1.0), ("acceptance_rate", 0.2),
                                                          ("guidance_scale", 1.0), ("guidance_scale", 3.0)]
    assert [r["candidates"] for r in rows[:2]] == [20, 100] and all(r["n_samples"] == 20 for r in rows)
    assert all(r["fid"] > 0 and 0 <= r["class_accuracy"] <= 1 for r in rows)
    assert rows[1]["class_score"] > rows[0]["class_score"]  # keeping the best fifth by the classifier's p(class)
    assert "| acceptance rate | 0.2 |" in out.with_suffix(".md").read_text()
    assert "| guidance scale | 3 |" in capsys.readouterr().out


def test_refuses_an_unconditional_chain_and_unbalanced_n(tmp_path, capsys):
    plain = write_chain(tmp_path / "plain")
    with pytest.raises(SystemExit):
        main(["--config", str(plain), "--device", "cpu"])
    assert "unconditional" in capsys.readouterr().err
    guided = write_chain(tmp_path / "guided", conditional=True, cond_drop_prob=0.1)
    with pytest.raises(SystemExit):
        main(["--config", str(guided), "--device", "cpu", "-n", "15"])
    assert "multiple of the 10 classes" in capsys.readouterr().err
