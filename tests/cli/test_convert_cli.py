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
