"""scripts/compute_remap.py: the written list makes a remapped VQGAN encode the data losslessly."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from imagebart.data.demo import DemoScenes
from imagebart.models.vqgan import VQGANWrapper

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compute_remap.py"
DD = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32,
          ch_mult=[1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
DATA = {"target": "imagebart.data.demo.DemoScenes", "params": {"split": "train", "size": 16, "length": 12}}


def load_script():
    spec = importlib.util.spec_from_file_location("compute_remap", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def vqgan_files(tmp_path):
    torch.manual_seed(0)
    model = VQGANWrapper(embed_dim=4, n_embed=64, ddconfig=DD)
    with torch.no_grad():  # a spread-out codebook so several entries get used
        model.quantize.embedding.weight.normal_()
    ckpt = tmp_path / "vq.ckpt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    config = {
        "model": {"target": "imagebart.models.vqgan_training.VQModel",
                  "params": {"embed_dim": 4, "n_embed": 64, "ddconfig": DD}},
        "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 4, "train": DATA}},
    }
    cfg = tmp_path / "vqgan.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return cfg, ckpt


def test_written_indices_round_trip(tmp_path, vqgan_files):
    cfg, ckpt = vqgan_files
    out = tmp_path / "indices.npy"
    used = load_script().main(["--config", str(cfg), "--ckpt", str(ckpt), "--out", str(out),
                               "--batch_size", "4"])
    saved = np.load(out)
    assert saved.dtype == np.int64 and np.array_equal(saved, used)
    assert np.all(np.diff(saved) > 0) and 1 < saved.size < 64

    model = VQGANWrapper(embed_dim=4, n_embed=64, ddconfig=DD, remap=str(out),
                         sane_index_shape=True, ckpt_path=str(ckpt)).freeze()
    assert model.quantize.re_embed == saved.size
    x = torch.stack([torch.from_numpy(DemoScenes(**DATA["params"])[i]["image"]) for i in range(12)])
    with torch.no_grad():
        raw = model.quantize.raw_indices(model.encode_to_prequant(x.permute(0, 3, 1, 2)))
        _, _, (_, _, idx) = model.encode(x.permute(0, 3, 1, 2))
    assert idx.min() >= 0 and idx.max() < saved.size
    assert torch.equal(model.quantize.unmap_to_all(idx), raw)  # no unknown codes: exact


def test_separate_data_file_and_max_batches(tmp_path, vqgan_files):
    cfg, ckpt = vqgan_files
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(DATA))
    out = tmp_path / "few.npy"
    few = load_script().main(["--config", str(cfg), "--ckpt", str(ckpt), "--data", str(data),
                              "--out", str(out), "--batch_size", "2", "--max_batches", "1"])
    everything = load_script().main(["--config", str(cfg), "--ckpt", str(ckpt), "--out",
                                     str(tmp_path / "all.npy"), "--batch_size", "2"])
    assert set(few.tolist()) <= set(everything.tolist())
