"""Faults during training: signals, kill -9 during a checkpoint save, and resuming after each.

Each fault runs ``main.py`` in a subprocess on the demo scale-1 config shrunk to a tiny CPU model
(the tiny VQGAN of conftest.py); the resume that follows runs in-process. A checkpoint is
consistent when every Adam ``step``, the EMA's ``num_updates`` and ``global_step`` agree.
SIGINT, SIGUSR1 and the kill with the default ``$TMPDIR`` run with ``python -m pytest -m slow``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from conftest import tiny_data_overrides, tiny_first_stage_overrides
from imagebart.checkpoint_saving import PAUSE_ENV, AtomicCheckpointIO
from imagebart.cli.train import cli, main

REPO = Path(__file__).resolve().parents[1]
SCALE1 = str(REPO / "configs" / "demo" / "scale1.yaml")
TINY_NETWORK = dict(dim=32, enc_depth=1, dec_depth=1, enc_heads=2, dec_heads=2, enc_attn_dim_head=16,
                    dec_attn_dim_head=16, enc_num_tokens=32, dec_num_tokens=32, xt_size=16, enc_max_seq_len=17,
                    dec_max_seq_len=16)
QUIET = ["lightning.trainer.enable_progress_bar=false", "lightning.trainer.enable_model_summary=false",
         "lightning.callbacks.image_logger.params.batch_frequency=1000"]
SHORT = ["--val_check_interval", "2", "--limit_val_batches", "1", "--num_sanity_val_steps", "0"]
POSIX_ONLY = pytest.mark.skipif(not hasattr(signal, "SIGUSR1") or sys.platform == "win32", reason="POSIX signals")


# helpers (test_bad_training_inputs.py uses them too)


def denoiser_args(vqgan_ckpt: Path, logdir: Path, steps: int = 4, *extra: str) -> list[str]:
    """``main.py`` arguments: demo scale 1 with a tiny first stage and network, 16x16 demo data."""
    return ["--base", SCALE1, "-t", "-l", str(logdir), "--max_steps", str(steps), *SHORT,
            *tiny_first_stage_overrides(vqgan_ckpt), *tiny_data_overrides(16, 2),
            *(f"model.params.transformer_config.params.{k}={v}" for k, v in TINY_NETWORK.items()),
            "model.params.top_k=32", *QUIET, *extra]


def only_run(logdir: Path) -> Path:
    runs = [p for p in logdir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def step_record(path: Path) -> dict:
    """What a checkpoint says about its step: global_step, every Adam step, the EMA's updates."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return {"global_step": checkpoint["global_step"],
            "adam": {int(s["step"]) for o in checkpoint["optimizer_states"] for s in o["state"].values()},
            "ema": int(checkpoint["state_dict"]["transformer_ema.num_updates"])}


def assert_one_step(path: Path, step: int) -> None:
    assert step_record(path) == {"global_step": step, "adam": {step}, "ema": step}


def run_main(args: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python main.py args`` in a subprocess that can import this folder's callbacks."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)]), **(env or {})}
    return subprocess.Popen([sys.executable, str(REPO / "main.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


class SignalAt(Callback):
    """Sends ``signal_name`` to this very process at the end of training step ``step`` (a real
    signal, handled by the real handler, at a known point)."""

    def __init__(self, step: int, signal_name: str):
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:  # mid-step: the step must finish before the save
            os.kill(os.getpid(), self.signum)


def resume(run: Path, steps: int) -> int:
    trainer = main(["-r", str(run), "-t", "--max_steps", str(steps), *SHORT])
    return trainer.global_step


# signals


# SIGTERM runs by default; the other two (same path, other signal) with `python -m pytest -m slow`
@POSIX_ONLY
@pytest.mark.parametrize("signal_name", [pytest.param("SIGINT", marks=pytest.mark.slow), "SIGTERM",
                                         pytest.param("SIGUSR1", marks=pytest.mark.slow)])
def test_signal_saves_one_consistent_step_and_exits(tmp_path, tiny_vqgan_ckpt, signal_name):
    """The signal arrives while step 4 runs: step 4 completes (optimizer, EMA), then last.ckpt is
    saved and main.py exits with 128 + the signal number; -r goes on from there."""
    args = denoiser_args(tiny_vqgan_ckpt, tmp_path / "logs", 50, "lightning.callbacks.stop.target=test_training_faults.SignalAt",
                         "lightning.callbacks.stop.params.step=3", f"lightning.callbacks.stop.params.signal_name={signal_name}")
    process = run_main(args)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 128 + getattr(signal, signal_name), err[-2000:]
    assert "Traceback" not in err
    assert "weights_only" not in out + err  # our own full checkpoint: no Lightning notice about it
    run = only_run(tmp_path / "logs")
    assert f"{signal_name}: saved {run / 'checkpoints' / 'last.ckpt'} at step 4" in err
    assert_one_step(run / "checkpoints" / "last.ckpt", 4)
    assert resume(run, 6) == 6
    assert_one_step(run / "checkpoints" / "last.ckpt", 6)


# kill -9 during a save


@POSIX_ONLY
@pytest.mark.parametrize("tmpdir", [pytest.param(None, marks=pytest.mark.slow), "/dev/shm"])
def test_kill_during_checkpoint_save_keeps_the_previous_one(tmp_path, tiny_vqgan_ckpt, tmpdir):
    """A resumed run is killed while it writes last.ckpt (paused between writing the temporary
    file and renaming it): last.ckpt is still the intact previous one, and -r resumes from it."""
    if tmpdir and not Path(tmpdir).is_dir():
        pytest.skip(f"{tmpdir} does not exist here")
    main(denoiser_args(tiny_vqgan_ckpt, tmp_path / "logs", 2))
    run = only_run(tmp_path / "logs")
    last = run / "checkpoints" / "last.ckpt"
    assert_one_step(last, 2)
    env = {PAUSE_ENV: "last.ckpt", **({"TMPDIR": tmpdir} if tmpdir else {})}
    process = run_main(["-r", str(run), "-t", "--max_steps", "4", *SHORT], env=env)
    try:
        deadline = time.monotonic() + 300
        while not list(last.parent.glob(".last.ckpt.*.tmp")):  # the new last.ckpt is being written
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the resumed run never started saving last.ckpt"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert_one_step(last, 2)  # the previous checkpoint, whole
    assert resume(run, 4) == 4
    assert_one_step(last, 4)
    assert not list(last.parent.glob("*.tmp"))  # the killed save's leftover was cleared


def test_every_save_goes_through_the_atomic_checkpoint_io(tmp_path, tiny_vqgan_ckpt):
    """ModelCheckpoint (last and best) and SetupCallback all save through trainer.save_checkpoint,
    which writes with the strategy's checkpoint I/O: ours (the kill test sees its temporary file)."""
    trainer = main(denoiser_args(tiny_vqgan_ckpt, tmp_path / "logs", 2))
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    saved = sorted(p.name for p in (only_run(tmp_path / "logs") / "checkpoints").iterdir())
    assert saved == ["epoch=000000-step=000000002.ckpt", "last.ckpt"]  # no temporary file left


# resumes keep what was there


def test_resume_appends_to_the_metrics_log(tmp_path, tiny_vqgan_ckpt):
    main(denoiser_args(tiny_vqgan_ckpt, tmp_path / "logs", 2))
    run = only_run(tmp_path / "logs")
    metrics = run / "csv" / "metrics.csv"
    before = metrics.read_text().splitlines()
    assert len(before) > 1
    assert resume(run, 4) == 4
    after = metrics.read_text().splitlines()
    assert after[: len(before)] == before and len(after) > len(before)


def test_resume_without_t_says_nothing_was_trained(tmp_path, tiny_vqgan_ckpt, caplog):
    main(denoiser_args(tiny_vqgan_ckpt, tmp_path / "logs", 2))
    run = only_run(tmp_path / "logs")
    configs = sorted((run / "configs").iterdir())
    caplog.set_level("WARNING", logger="imagebart")
    assert cli(["-r", str(run)]) == 0
    assert "nothing is trained (the run stays at step 2); add -t" in caplog.text
    assert sorted((run / "configs").iterdir()) == configs
    assert_one_step(run / "checkpoints" / "last.ckpt", 2)
