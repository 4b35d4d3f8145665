"""main.py end to end on the real demo VQGAN config, shrunk: run directory, resume, interrupts."""

import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

from imagebart.callbacks import TrainingStopped
from imagebart.cli.train import cli, main

REPO = Path(__file__).resolve().parents[1]
VQGAN_CONFIG = str(REPO / "configs" / "demo" / "vqgan.yaml")
SHRINK = [
    "model.params.ddconfig.ch=32",
    "model.params.ddconfig.ch_mult=[1,2]",
    "model.params.ddconfig.resolution=16",
    "model.params.n_embed=32",
    "data.params.batch_size=4",
    "data.params.num_workers=0",
    "data.params.train.params.size=16",
    "data.params.train.params.length=64",
    "data.params.validation.params.size=16",
    "data.params.validation.params.length=8",
    "lightning.callbacks.image_logger.params.batch_frequency=2",
    "lightning.trainer.enable_progress_bar=false",
    "lightning.trainer.enable_model_summary=false",
]


def train(tmp_path, *extra, steps=4):
    args = ["--base", VQGAN_CONFIG, "-t", "-l", str(tmp_path / "logs"), "--max_steps", str(steps),
            "--val_check_interval", "2", "--limit_val_batches", "1", "--num_sanity_val_steps", "0", *SHRINK, *extra]
    return main(args)


def only_run_dir(tmp_path) -> Path:
    runs = [p for p in (tmp_path / "logs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def adam_steps(ckpt_path) -> list[int]:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return [int(s["step"]) for opt in ckpt["optimizer_states"] for s in opt["state"].values()][:1]


def test_training_writes_the_run_directory(tmp_path):
    trainer = train(tmp_path)
    run = only_run_dir(tmp_path)
    assert run.name.endswith("_vqgan") and run.name[:4].isdigit()
    assert trainer.global_step == 4
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("epoch=") for p in (run / "checkpoints").iterdir())  # best by monitor
    configs = sorted(p.name for p in (run / "configs").iterdir())
    assert len(configs) == 2 and configs[0].endswith("-lightning.yaml") and configs[1].endswith("-project.yaml")
    assert any((run / "images" / "train").glob("gs-000002_*.png"))
    assert any((run / "images" / "train").glob("gs-000004_*.png"))
    assert any((run / "images" / "val").glob("*.png"))
    # the saved project config holds the command-line overrides
    saved = (run / "configs" / configs[1]).read_text()
    assert "resolution: 16" in saved and "batch_size: 4" in saved


def test_scale_lr_multiplies_batch_and_accumulation(tmp_path, caplog):
    caplog.set_level("INFO", logger="imagebart")
    # no -t: the model and trainer are built (and the lr set) but nothing trains
    trainer = main(["--base", VQGAN_CONFIG, "-l", str(tmp_path / "logs"), "--accumulate_grad_batches", "2", *SHRINK])
    assert trainer.global_step == 0
    # 2 (accumulation) x 1 (device) x 4 (batch) x 2.5e-5 (base_learning_rate) = 2.00e-04
    assert "Setting learning rate to 2.00e-04 = 2 (accumulate_grad_batches) * 1" in caplog.text


def test_resume_continues_at_saved_step_with_optimizer_state(tmp_path):
    train(tmp_path, steps=4)
    run = only_run_dir(tmp_path)
    assert adam_steps(run / "checkpoints" / "last.ckpt") == [4]
    trainer = main(["-r", str(run), "-t", "--max_steps", "6", "--num_sanity_val_steps", "0",
                    "--limit_val_batches", "1", "--val_check_interval", "2"])
    assert trainer.global_step == 6
    assert only_run_dir(tmp_path) == run  # same directory, no new run
    # Adam's step count went on from 4: the optimizer state was restored, not re-initialised
    assert adam_steps(run / "checkpoints" / "last.ckpt") == [6]
    assert len(list((run / "configs").glob("*-project.yaml"))) >= 1


class RaiseAt(Callback):
    """Test helper: at a given step, raise KeyboardInterrupt from inside the loop (not a signal:
    what a debugger or a non-main thread does) or send this process SIGUSR1."""

    def __init__(self, step, what):
        self.step, self.what = step, what

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.what == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGUSR1)


def test_keyboard_interrupt_outside_the_handler_keeps_the_last_checkpoint(tmp_path):
    """A KeyboardInterrupt raised anywhere may split a step: nothing is saved over last.ckpt."""
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "lightning.callbacks.stop.target=test_main.RaiseAt",
              "lightning.callbacks.stop.params.step=3", "lightning.callbacks.stop.params.what=ctrl-c", steps=10)
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # the validation-time save of step 2, untouched


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1 exists on POSIX only")
def test_sigusr1_saves_last_checkpoint_and_stops(tmp_path):
    with pytest.raises(TrainingStopped) as stopped:
        train(tmp_path, "lightning.callbacks.stop.target=test_main.RaiseAt",
              "lightning.callbacks.stop.params.step=3", "lightning.callbacks.stop.params.what=usr1",
              "lightning.modelcheckpoint.params.save_last=false",
              "lightning.modelcheckpoint.params.save_top_k=0", steps=10)
    assert stopped.value.exit_code == 128 + signal.SIGUSR1
    ckpt = torch.load(only_run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # the signal arrives after step 3's boundary was checked: saved at the next boundary
    assert ckpt["global_step"] == 4 and adam_steps(only_run_dir(tmp_path) / "checkpoints" / "last.ckpt") == [4]
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # handlers given back


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "nope.yaml", "-t"], "config file not found: nope.yaml"),
        (["--base", VQGAN_CONFIG, "-t", "model.target=imagebart.nothing.Here"], "unknown target 'imagebart.nothing.Here'"),
        (["--base", VQGAN_CONFIG, "-t", "model.params.embed_dimm=3"], "embed_dimm"),
        (["--base", VQGAN_CONFIG, "-t", "--gpus", "0,"], "no CUDA device"),
        (["--base", VQGAN_CONFIG, "-t", "lightning.trainer.gpuss=1"], "gpuss"),
        (["--base", VQGAN_CONFIG, "-t", "--bogus", "3"], "--bogus"),
        (["-n", "x", "-r", "somewhere"], "cannot be used together"),
    ],
)
def test_bad_input_ends_with_one_clear_message(tmp_path, capsys, args, message):
    if "--gpus" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        cli([*args, "-l", str(tmp_path / "logs")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()  # nothing half-written


def test_empty_dataset_is_named(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = OmegaConf.load(VQGAN_CONFIG)
    config.data.params.train = {"target": "imagebart.data.folder.ImageFolder", "params": {"root": str(empty)}}
    OmegaConf.save(config, tmp_path / "empty.yaml")
    with pytest.raises(SystemExit) as exit_info:
        cli(["--base", str(tmp_path / "empty.yaml"), "-t", "-l", str(tmp_path / "logs")])
    assert exit_info.value.code == 2
    assert str(empty) in capsys.readouterr().err


def test_demo_run_logs_images_from_step_one_and_metrics_under_the_readme_names(tmp_path, tiny_scale1_config, capsys):
    """Demo configs log images at steps 1, 2, 4, ... (increase_log_steps) with max_images columns, upscaled;
    metrics.csv has train/loss (not _step / _epoch) and only this scale's log_scalors; plot_metrics draws it."""
    import csv

    from imagebart.cli.plot_metrics import main as plot_metrics
    from PIL import Image

    main(["--base", str(tiny_scale1_config), "-t", "-l", str(tmp_path / "logs"), "--max_steps", "4", "--no-test",
          "--limit_val_batches", "1", "--val_check_interval", "2", "--num_sanity_val_steps", "0",
          "--log_every_n_steps", "1", "lightning.trainer.enable_progress_bar=false",
          "lightning.callbacks.image_logger.params.max_images=3"])
    run = only_run_dir(tmp_path)
    logged = sorted(p.name[:9] for p in (run / "images" / "train").glob("gs-*.png"))
    assert logged == ["gs-000001", "gs-000002", "gs-000004"]
    with Image.open(next((run / "images" / "train").glob("gs-000001_*.png"))) as png:
        # 16-px images upscaled 6x to 96 px; the widest row is the forward chain x_0 .. x_3 (4 images)
        assert png.width == 4 * (96 + 2) + 2
        assert png.height > 5 * 96  # inputs, x_t-1, x_t, a sample and the forward chain, each titled
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        columns = set(next(csv.reader(handle)))
    assert {"train/loss", "train/bits_per_token", "val/loss", "val/loss_bits", "val_ema/loss"} <= columns
    assert not any(c.endswith(("_step", "_epoch")) for c in columns), columns
    assert sorted(c for c in columns if "log_scalors" in c) == ["train/log_scalors_0"]  # scale 1 trains index 0
    assert plot_metrics([str(run)]) == 0
    printed = capsys.readouterr().out
    assert "train/loss: " in printed and "val_ema/loss_bits: " in printed and f"wrote {run / 'metrics.png'}" in printed
    with Image.open(run / "metrics.png") as png:
        assert png.size == (1200, 400)  # two panels, 6 x 4 inches at 100 dpi
