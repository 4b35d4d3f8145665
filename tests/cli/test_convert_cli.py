"""scripts/convert_checkpoint.py (imagebart.cli.convert): writes a native checkpoint, refuses to overwrite."""

import pytest
import torch

from imagebart.cli.convert import main
from imagebart.checkpoint_io import load_state_dict


def test_first_stage_only_and_refusals(tmp_path, capsys):
    source = tmp_path / "run.ckpt"
    weights = {"first_stage_model.encoder.w": torch.ones(2), "transformer.w": torch.zeros(3)}
    torch.save({"state_dict": weights, "global_step": 5}, source)
    out = tmp_path / "out" / "vqgan.ckpt"
    assert main([str(source), str(out), "--first_stage_only", "--half"]) == 0
    state = load_state_dict(out)
    assert list(state) == ["encoder.w"] and state["encoder.w"].dtype == torch.float16
    for argv, message in (([str(source), str(out)], "exists; pass --force"),
                          ([str(source), str(source), "--force"], "the same file"),
                          ([str(tmp_path / "nothing.ckpt"), str(tmp_path / "x.ckpt")], "nothing.ckpt")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("scripts/convert_checkpoint.py: error: ") and message in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_force_onto_a_link_of_the_input_is_refused(tmp_path, capsys, link):
    source = tmp_path / "run.ckpt"
    torch.save({"state_dict": {"transformer.w": torch.arange(3.0)}}, source)
    before = source.read_bytes()
    alias = tmp_path / "alias.ckpt"
    (alias.hardlink_to if link == "hard" else alias.symlink_to)(source)
    with pytest.raises(SystemExit) as exit_info:
        main([str(source), str(alias), "--force"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "is the input" in err and len(err.strip().splitlines()) == 1
    assert source.read_bytes() == before


def test_force_replaces_a_symlink_not_its_target_and_leaves_no_temporary_file(tmp_path):
    source, other = tmp_path / "run.ckpt", tmp_path / "other.ckpt"
    torch.save({"state_dict": {"transformer.w": torch.arange(3.0)}}, source)
    torch.save({"state_dict": {"x": torch.zeros(1)}}, other)
    kept = other.read_bytes()
    out = tmp_path / "out.ckpt"
    out.symlink_to(other)
    assert main([str(source), str(out), "--force"]) == 0
    assert not out.is_symlink() and other.read_bytes() == kept
    assert list(load_state_dict(out)) == ["transformer.w"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.ckpt", "out.ckpt", "run.ckpt"]


def test_records_pass_through_conversion_and_can_be_added(tmp_path):
    """A trained checkpoint's hyper-parameters survive conversion; --config records them for one without."""
    import torch
    from omegaconf import OmegaConf
    from tiny_chain import write_chain

    from imagebart.cli.convert import main
    from imagebart.loading import read_checkpoint

    sampling = write_chain(tmp_path / "chain")
    source = tmp_path / "chain" / "scale2.ckpt"
    assert main([str(source), str(tmp_path / "ema.ckpt"), "--ema_only"]) == 0
    _, record = read_checkpoint(tmp_path / "ema.ckpt")
    assert record["hparams"] == read_checkpoint(source)[1]["hparams"] and record["hparams"]["single_scale"] == 2
    bare = torch.load(source, weights_only=True)
    del bare["imagebart"]
    torch.save(bare, tmp_path / "bare.ckpt")
    assert main([str(tmp_path / "bare.ckpt"), str(tmp_path / "recorded.ckpt"),
                 "--config", str(OmegaConf.load(sampling).configs[1])]) == 0
    assert read_checkpoint(tmp_path / "recorded.ckpt")[1]["hparams"] == record["hparams"]
