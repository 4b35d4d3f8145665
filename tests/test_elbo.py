"""The negative ELBO of a stacked chain: the exact prior term and the script end to end."""

import json
import math

import pytest
from omegaconf import OmegaConf
from tiny_chain import IMAGE_SIZE, K, L, write_chain

from imagebart.cli import elbo
from imagebart.metrics import ElboReport, prior_kl


def test_prior_kl_is_zero_for_pure_noise_and_log_k_for_no_noise():
    assert prior_kl(0.0, 48) == 0.0
    assert prior_kl(1.0, 48) == pytest.approx(math.log(48))
    assert 0 < prior_kl(0.3, 48) < math.log(48)


def test_report_totals_and_units():
    report = ElboReport(terms={1: 2.0, 2: 0.5}, prior=0.1, tokens_per_image=256, pixels_per_image=256 * 256)
    assert report.nats_per_token == pytest.approx(2.6)
    assert report.bits_per_token == pytest.approx(2.6 / math.log(2))
    assert report.bits_per_dim == pytest.approx(2.6 / math.log(2) * 256 / (256 * 256 * 3))
    assert "-ELBO" in report.table()


def test_elbo_script_on_a_tiny_chain(tmp_path, capsys):
    sampling = write_chain(tmp_path / "chain")
    data = tmp_path / "data.yaml"
    OmegaConf.save({"target": "imagebart.data.demo.DemoScenes",
                    "params": {"split": "validation", "size": IMAGE_SIZE, "length": 4}}, data)
    out = tmp_path / "elbo.json"
    assert elbo.main(["--config", str(sampling), "--data", str(data), "--batch_size", "2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    terms = figures["terms_nats_per_token"]
    assert set(terms) == {"1", "2", "3"} and all(v > 0 for v in terms.values())
    assert figures["prior_nats_per_token"] == 0.0  # geometric: x_T is pure noise
    assert figures["bits_per_token"] == pytest.approx(sum(terms.values()) / math.log(2))
    assert figures["bits_per_dim"] == pytest.approx(figures["bits_per_token"] * L / (IMAGE_SIZE**2 * 3))
    assert figures["examples_per_scale"] == {"1": 4, "2": 4, "3": 4}
    # a random scale-1 model cannot beat the uniform code length by much
    assert terms["1"] > 0.5 * math.log(K)
    assert "-ELBO" in capsys.readouterr().out
