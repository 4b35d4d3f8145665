"""Checkpoints record a digest and their hyper-parameters; loading refuses corrupt or mislabelled ones."""

import pytest
import torch
from omegaconf import OmegaConf
from tiny_chain import write_chain

from imagebart.checkpoint_record import (
    RECORD_KEY, CheckpointMismatch, differences, make_record, state_dict_sha256, verify_digest,
)
from imagebart.loading import read_checkpoint
from imagebart.sampling.chain import ImageBARTChain
from imagebart.util import instantiate_from_config


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recorded_chain")
    return write_chain(folder), folder


def test_digest_sees_every_byte_name_and_dtype():
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int32)}
    digest = state_dict_sha256(state)
    assert digest == state_dict_sha256({k: v.clone() for k, v in state.items()})
    assert digest == state_dict_sha256({"a": state["a"].t().contiguous().t(), "b": state["b"]})  # strides don't matter
    flipped = {"a": state["a"].clone(), "b": state["b"]}
    flipped["a"].view(torch.uint8)[0] ^= 1  # one bit of one float
    assert state_dict_sha256(flipped) != digest
    assert state_dict_sha256({"a2": state["a"], "b": state["b"]}) != digest
    assert state_dict_sha256({"a": state["a"].double(), "b": state["b"]}) != digest
    verify_digest(make_record(state), state, "x.ckpt")
    with pytest.raises(CheckpointMismatch, match="x.ckpt is corrupt"):
        verify_digest(make_record(state), flipped, "x.ckpt")


def test_differences_name_each_hyper_parameter():
    assert differences({"t": 1, "n": [1, 2]}, {"t": 1, "n": (1, 2)}) == []
    assert differences({"single_scale": 2, "n_scales": 3}, {"single_scale": 1, "n_scales": 3}) == [
        "single_scale: checkpoint 2, config 1"]
    network = {"target": "X", "params": {"dim": 64, "dec_depth": 1}}
    assert differences({"network": network}, {"network": {**network, "params": {"dim": 64, "dec_depth": 2}}}) == [
        "network.params.dec_depth: checkpoint 1, config 2"]
    assert differences({"network": network}, {"network": {**network, "params": {"dim": 64}}}) == [
        "network.params.dec_depth: checkpoint 1, config None"]


def test_recorded_chain_loads(chain_dir):
    sampling, _ = chain_dir
    chain = ImageBARTChain.from_sampling_config(sampling, device="cpu")
    assert chain.n_scales == 3
    _, record = read_checkpoint(OmegaConf.load(sampling).checkpoints[0])
    assert record["hparams"]["single_scale"] == 1 and len(record["sha256"]) == 64


def test_a_scale_listed_at_the_wrong_position_is_named(chain_dir, tmp_path):
    sampling, _ = chain_dir
    config = OmegaConf.load(sampling)
    config.checkpoints = [config.checkpoints[1], config.checkpoints[0], config.checkpoints[2]]
    swapped = tmp_path / "swapped.yaml"
    OmegaConf.save(config, swapped)
    with pytest.raises(CheckpointMismatch, match=r"scale2\.ckpt was written for another model.*single_scale: "
                                                 r"checkpoint 2, config 1"):
        ImageBARTChain.from_sampling_config(swapped, device="cpu")


def corrupt_file(path, n_bytes=4096):
    """Flip ``n_bytes`` inside the stored bytes of the largest tensor, as a bad disk or copy would."""
    state = torch.load(path, weights_only=True)["state_dict"]
    name = max(state, key=lambda k: state[k].numel() * state[k].element_size())
    data = state[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    raw = bytearray(path.read_bytes())
    start = raw.find(data)
    assert start >= 0, "the tensor's bytes are stored uncompressed"
    n = min(n_bytes, len(data))
    for i in range(start, start + n):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_bytes_are_refused_and_can_be_waved_through(chain_dir, tmp_path):
    sampling, folder = chain_dir
    config = OmegaConf.load(sampling)
    damaged = tmp_path / "scale1.ckpt"
    damaged.write_bytes((folder / "scale1.ckpt").read_bytes())
    corrupt_file(damaged)
    config.checkpoints[0] = str(damaged)
    path = tmp_path / "damaged.yaml"
    OmegaConf.save(config, path)
    with pytest.raises(CheckpointMismatch, match=r"scale1\.ckpt is corrupt"):
        ImageBARTChain.from_sampling_config(path, device="cpu")
    chain = ImageBARTChain.from_sampling_config(path, device="cpu", strict=False)  # deliberately
    assert chain.n_scales == 3


def test_resume_refuses_an_edited_config(chain_dir):
    _, folder = chain_dir
    config = OmegaConf.load(folder / "scale2.yaml")
    checkpoint = torch.load(folder / "scale2.ckpt", weights_only=True)
    model = instantiate_from_config(config.model)
    model.on_load_checkpoint(checkpoint)  # the same config: fine
    config.model.params.redraw_prob = 0.5  # someone edited the schedule of the run
    edited = instantiate_from_config(config.model)
    with pytest.raises(CheckpointMismatch, match="alphas_cumprod: checkpoint"):
        edited.on_load_checkpoint(checkpoint)
    edited.check_resumed_checkpoint = False  # main.py --ignore_checkpoint_record
    edited.on_load_checkpoint(checkpoint)


def test_training_checkpoints_carry_the_record(chain_dir):
    _, folder = chain_dir
    config = OmegaConf.load(folder / "scale3.yaml")
    model = instantiate_from_config(config.model)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint[RECORD_KEY]["hparams"] == {**model.hparams_record(), "latent_shape": list(model.latent_shape)}
    verify_digest(checkpoint[RECORD_KEY], checkpoint["state_dict"], "saved")


def test_sample_cli_refuses_a_swapped_scale_unless_told(chain_dir, tmp_path, capsys):
    from imagebart.cli.sample import main

    sampling, _ = chain_dir
    config = OmegaConf.load(sampling)
    config.checkpoints = [config.checkpoints[1], config.checkpoints[0], config.checkpoints[2]]
    swapped = tmp_path / "swapped.yaml"
    OmegaConf.save(config, swapped)
    args = ["--config", str(swapped), "-n", "1", "--batch_size", "1", "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--outdir", str(tmp_path / "refused")])
    assert exit_info.value.code == 2
    assert "scale2.ckpt was written for another model" in capsys.readouterr().err
    # deliberately: a warning, and the (shape-compatible) weights are loaded where listed
    with pytest.raises((SystemExit, ValueError)):
        main(args + ["--outdir", str(tmp_path / "forced"), "--ignore_checkpoint_record"])
    assert "lacks" in capsys.readouterr().err  # scale 1 is residual-scaled, scale 2 plain: weights do not fit
