"""The packaged quality-curve tables carry the original release's figures unchanged."""

import importlib.util
import json
from pathlib import Path

import pytest

from imagebart.diffusion.curves import CURVES_DIR, available_datasets, load_quality_curve

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "write_schedule_curves.py"


def test_packaged_datasets():
    assert available_datasets() == ["ffhq", "in"]
    for dset in ("in", "ffhq"):
        table = load_quality_curve(dset)
        assert set(table) == {"alphacum", "FID", "IS", "PSNR", "PSIM", "SSIM"}
        assert len(table["alphacum"]) == 20 and table["alphacum"][0] == 1.0 and table["alphacum"][-1] == 0.0


@pytest.mark.parametrize("pickle_name, dset", [("in_schedule_vs_metric.p", "in"), ("ffhq_schedule_vs_metric.p", "ffhq")])
def test_packaged_curves_equal_the_reference(reference_dir, pickle_name, dset):
    measured = json.loads((reference_dir / "schedule_curves.json").read_text())["files"][pickle_name]["data"]["bernoulli"]
    table = load_quality_curve(dset)
    assert table["alphacum"] == measured["alphacum"]
    for metric in ("FID", "IS", "PSNR", "PSIM", "SSIM"):
        assert table[metric] == [row[0] for row in measured[metric]], metric


def test_script_rewrites_the_packaged_files(reference_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("write_schedule_curves", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--source", str(reference_dir / "schedule_curves.json"), "--out", str(tmp_path)])
    for dset in ("in", "ffhq"):
        assert (tmp_path / f"{dset}.json").read_text() == (CURVES_DIR / f"{dset}.json").read_text()
