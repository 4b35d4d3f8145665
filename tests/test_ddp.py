"""Two CPU processes train one demo scale with DDP (gloo): ranks stay in sync, rank 0 writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback

from conftest import tiny_first_stage_overrides

REPO = Path(__file__).resolve().parents[1]


class RankProbe(Callback):
    """Each rank writes a digest of its weights when training ends (read back by the test)."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module):
        params = torch.cat([p.detach().flatten() for p in pl_module.transformer.parameters()])
        ema = torch.cat([b.detach().flatten().float() for n, b in pl_module.transformer_ema.named_buffers()
                         if n not in ("decay", "num_updates")])
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "step": trainer.global_step,
                  "params": params.double().sum().item(), "params_abs": params.double().abs().sum().item(),
                  "ema": ema.double().sum().item()}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def test_two_process_ddp_stays_in_sync_and_rank_zero_writes(tmp_path, tiny_vqgan_ckpt):
    probe = tmp_path / "probe"
    args = [
        sys.executable, "main.py", "--base", "configs/demo/scale1.yaml", "-t", "-l", str(tmp_path / "logs"),
        "--accelerator", "cpu", "--devices", "2", "--max_steps", "3", "--val_check_interval", "3",
        "--limit_val_batches", "1", "--num_sanity_val_steps", "0", "--enable_progress_bar", "false",
        *tiny_first_stage_overrides(tiny_vqgan_ckpt),
        "model.params.top_k=32", "model.params.transformer_config.params.xt_size=16",
        "model.params.transformer_config.params.enc_max_seq_len=17",
        "model.params.transformer_config.params.dec_max_seq_len=16",
        "model.params.transformer_config.params.enc_num_tokens=32",
        "model.params.transformer_config.params.dec_num_tokens=32",
        "model.params.transformer_config.params.dim=32", "model.params.transformer_config.params.enc_depth=1",
        "model.params.transformer_config.params.dec_depth=1",
        "data.params.batch_size=2", "data.params.num_workers=0",
        "data.params.train.params.size=16", "data.params.train.params.length=32",
        "data.params.validation.params.size=16", "data.params.validation.params.length=4",
        "lightning.callbacks.image_logger.params.batch_frequency=2",
        "lightning.callbacks.probe.target=test_ddp.RankProbe", f"lightning.callbacks.probe.params.out_dir={probe}",
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]), OMP_NUM_THREADS="1")
    env.pop("LOCAL_RANK", None)
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    records = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["step"] for r in records] == [3, 3]
    # identical weights and EMA on both ranks after three synchronised optimiser steps
    for key in ("params", "params_abs", "ema"):
        assert records[0][key] == records[1][key]

    runs = list((tmp_path / "logs").iterdir())
    assert len(runs) == 1, f"ranks disagreed on the run directory: {runs}"
    run = runs[0]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "configs").glob("*-project.yaml"))) == 1
    assert len(list(run.rglob("events.out.tfevents.*"))) + len(list(run.rglob("metrics.csv"))) == 1
    assert any((run / "images" / "train").glob("*.png"))
