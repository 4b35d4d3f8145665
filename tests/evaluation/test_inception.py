"""The FID Inception built without torchvision: its structure, weights from a local file only."""

import pytest
import torch

from imagebart.evaluation.inception import WEIGHTS_NAME, FIDInceptionV3, find_weights, load_inception


def test_structure_matches_the_fid_graph():
    net = FIDInceptionV3()
    # torchvision's inception_v3 without the auxiliary head has 23,834,568 parameters with a
    # 1000-class fc; the FID graph's fc has 1008 classes (+ 8 x 2049)
    assert sum(p.numel() for p in net.parameters()) == 23_834_568 + 8 * 2049
    names = net.state_dict().keys()
    assert {"Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_mean", "Mixed_7c.branch3x3dbl_3b.conv.weight",
            "fc.weight"} <= set(names)


def test_loads_a_local_file_and_returns_features_and_logits(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / WEIGHTS_NAME
    torch.save(FIDInceptionV3().state_dict(), weights)
    net = load_inception(weights)
    out = net(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert (out["features"] >= 0).all()  # after ReLU and average pooling
    with pytest.raises(ValueError, match="does not hold FID Inception weights"):
        torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
        load_inception(tmp_path / "other.pth")


def test_missing_weights_say_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEBART_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch hub's cache lives below it
    with pytest.raises(FileNotFoundError, match=f"put {WEIGHTS_NAME} .*there, or pass --inception_weights"):
        find_weights()
