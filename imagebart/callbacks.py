"""Training callbacks: run-directory set-up, image logging, checkpoints on a signal or a crash.

These are the original's ``main.SetupCallback`` and ``main.ImageLogger`` (the config targets
still resolve through :data:`imagebart.util.LEGACY_TARGETS`), written for Lightning 2.
"""

from __future__ import annotations

import inspect
import logging
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only

from imagebart.checkpoint_saving import remove_stale_temporaries
from imagebart.images import READABLE_SIDE, make_grid, save_labelled_grid

logger = logging.getLogger(__name__)


# signals that stop a run: save at the next step boundary, then exit with 128 + the signal number
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class TrainingStopped(Exception):
    """Training stopped on a signal after saving ``last.ckpt`` at a step boundary (not an error)."""

    def __init__(self, signum: int, step: int, path: Path, logdir: Path):
        self.signum, self.step, self.path, self.logdir = signum, step, Path(path), Path(logdir)
        name = signal.Signals(signum).name if signum else "a signal on another process"
        super().__init__(f"{name}: saved {self.path} at step {step}; continue with: "
                         f"python main.py -r {self.logdir} -t")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signum or signal.SIGTERM)


class SetupCallback(Callback):
    """Creates the run directory, saves the configs, and saves ``last.ckpt`` on a signal or a crash.

    Ctrl-C (SIGINT), SIGTERM and SIGUSR1 (a cluster's pre-emption warning) only set a flag: at the
    end of the training step that is running (after the optimizer step, the lr scheduler and the
    EMA) ``last.ckpt`` is saved and training stops with :class:`TrainingStopped`, so a checkpoint
    always holds one consistent step. A second Ctrl-C stops at once without saving (the previous
    ``last.ckpt`` stays as it was). A crash saves ``last.ckpt`` only once training has advanced
    past the step it started from: a failure during set-up never overwrites the checkpoint a run
    was resumed from. The configs are written when training (or testing) really starts, so a
    resume that fails before adds nothing to ``configs/``.
    """

    def __init__(self, resume, now, logdir, ckptdir, cfgdir, config, lightning_config):
        super().__init__()
        self.resume = resume
        self.now = now
        self.logdir = Path(logdir)
        self.ckptdir = Path(ckptdir)
        self.cfgdir = Path(cfgdir)
        self.config = config
        self.lightning_config = lightning_config
        self._start_step = None
        self._configs_saved = False
        self.stop_signal = None  # the signal number received (0: another rank's)
        self.hard_interrupted = False
        self._previous_handlers = {}

    # run directory

    def setup(self, trainer, pl_module, stage):
        if trainer.global_rank != 0:
            return
        for folder in (self.logdir, self.ckptdir, self.cfgdir):
            folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.ckptdir)
        logger.info("run directory %s", self.logdir)

    def save_configs(self, trainer) -> None:
        if trainer.global_rank != 0 or self._configs_saved:
            return
        self._configs_saved = True
        OmegaConf.save(self.config, self.cfgdir / f"{self.now}-project.yaml")
        OmegaConf.save(OmegaConf.create({"lightning": self.lightning_config}), self.cfgdir / f"{self.now}-lightning.yaml")

    def on_test_start(self, trainer, pl_module):
        self.save_configs(trainer)

    # signals: a flag now, the save at the next step boundary

    def on_train_start(self, trainer, pl_module):
        self.save_configs(trainer)
        self._start_step = trainer.global_step
        # installed after Lightning's own SIGTERM handler (registered before training starts)
        for signum in STOP_SIGNALS:
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not in the main thread (some launchers): no signal hooks
                break

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None and signum == signal.SIGINT:
            self.hard_interrupted = True
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
        if self.stop_signal is None:
            logger.warning("%s: saving last.ckpt at the end of this training step, then stopping%s",
                           signal.Signals(signum).name,
                           " (Ctrl-C again: stop now without saving)" if signum == signal.SIGINT else "")
        self.stop_signal = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        flag = self.stop_signal is not None
        if trainer.world_size > 1:  # every rank must join the (collective) save and stop
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        if flag:
            signum = self.stop_signal or 0
            path = self.save_last(trainer, reason=signal.Signals(signum).name if signum else "signal")
            for run_logger in trainer.loggers:
                run_logger.save()
            raise TrainingStopped(signum, trainer.global_step, path, self.logdir)

    def on_train_end(self, trainer, pl_module):
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception):
        self._restore_handlers()
        if isinstance(exception, KeyboardInterrupt):
            self.hard_interrupted = True
            if trainer.global_rank == 0:
                logger.warning("stopped without saving: %s is the last checkpoint", self.ckptdir / "last.ckpt")
            return
        if isinstance(exception, (TrainingStopped, SystemExit)):
            return  # saved already, or Lightning's own exit
        if self._start_step is None or trainer.global_step <= self._start_step:
            return
        # an error raised by a step leaves the weights and optimizer of the step before it
        self.save_last(trainer, reason=type(exception).__name__)

    def save_last(self, trainer, reason: str) -> Path:
        path = self.ckptdir / "last.ckpt"
        if trainer.global_rank == 0:
            logger.warning("%s: saving checkpoint at step %d to %s", reason, trainer.global_step, path)
        trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint (optimizer, EMA, loops), said explicitly
        return path


class ImageLogger(Callback):
    """Saves the model's ``log_images`` as one labelled PNG per logging step under
    ``<logdir>/images/{train,val}/gs-<step>_e-<epoch>_b-<batch>.png``.

    Each image tensor the model returns is a row titled with its name (``max_images`` images at
    most, upscaled with nearest neighbours so 32-pixel images stay readable); a list of strings
    under ``column_titles`` labels the columns. Logs at global steps 1, 2, 4, ... below
    ``batch_frequency`` when ``increase_log_steps`` (the first minutes of a run show something),
    then every ``batch_frequency`` steps; the rows also go to TensorBoard when it is the logger.
    """

    def __init__(self, batch_frequency, max_images, clamp=True, increase_log_steps=True,
                 rescale=True, disabled=False, log_on_batch_idx=False, log_first_step=False,
                 log_images_kwargs=None, min_side: int = READABLE_SIDE):
        super().__init__()
        if batch_frequency < 1:
            raise ValueError(f"ImageLogger batch_frequency must be >= 1, got {batch_frequency}")
        self.batch_freq = int(batch_frequency)
        self.max_images = int(max_images)
        self.clamp = clamp
        self.rescale = rescale
        self.disabled = disabled
        self.log_on_batch_idx = log_on_batch_idx
        self.log_first_step = log_first_step
        self.log_images_kwargs = dict(log_images_kwargs or {})
        self.min_side = int(min_side)
        self.log_steps = [2**n for n in range(int(np.log2(self.batch_freq)) + 1)]
        if not increase_log_steps:
            self.log_steps = [self.batch_freq]
        self._logged = set()

    def check_frequency(self, check_idx: int) -> bool:
        if check_idx <= 0 and not self.log_first_step:
            return False
        return check_idx % self.batch_freq == 0 or check_idx in self.log_steps

    @staticmethod
    def image_dir(trainer) -> Path:
        return Path(trainer.default_root_dir) / "images"

    @rank_zero_only
    def log_local(self, save_dir, split, images, global_step, current_epoch, batch_idx, column_titles=()):
        name = f"gs-{global_step:06}_e-{current_epoch:06}_b-{batch_idx:06}.png"
        save_labelled_grid(images, Path(save_dir) / split / name, column_titles[: self.max_images], self.min_side)

    def _kwargs(self, pl_module) -> dict:
        """``N = max_images`` for models whose ``log_images`` takes it (they draw N examples)."""
        kwargs = dict(self.log_images_kwargs)
        if "N" not in kwargs and "N" in inspect.signature(pl_module.log_images).parameters:
            kwargs["N"] = self.max_images
        return kwargs

    def log_img(self, trainer, pl_module, batch, batch_idx, split="train"):
        check_idx = batch_idx if self.log_on_batch_idx else pl_module.global_step
        if self.disabled or self.max_images <= 0 or not callable(getattr(pl_module, "log_images", None)):
            return
        if not self.check_frequency(check_idx) or (split, check_idx) in self._logged:
            return
        self._logged.add((split, check_idx))  # once per step, not once per validation batch
        was_training = pl_module.training
        pl_module.eval()
        kwargs = self._kwargs(pl_module)
        with torch.no_grad():
            logged = pl_module.log_images(batch, split=split, **kwargs)
        if was_training:
            pl_module.train()
        keep = None if "N" in kwargs else self.max_images  # a model that drew N examples keeps its chain rows whole
        images = {k: v[:keep].detach().float().cpu() for k, v in logged.items() if isinstance(v, torch.Tensor)}
        if self.clamp:
            images = {k: v.clamp(-1, 1) for k, v in images.items()}
        self.log_local(self.image_dir(trainer), split, images, pl_module.global_step, pl_module.current_epoch,
                       batch_idx, list(logged.get("column_titles", ())))
        self._log_to_tensorboard(trainer, images, split, pl_module.global_step)

    @rank_zero_only
    def _log_to_tensorboard(self, trainer, images, split, step):
        experiment = getattr(trainer.logger, "experiment", None)
        if not hasattr(experiment, "add_image"):
            return
        for key, batch in images.items():
            grid = (make_grid(batch, nrow=len(batch)) + 1.0) / 2.0  # one row, as in the PNG
            experiment.add_image(f"{split}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', key).strip('_')}", grid, global_step=step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.global_step > 0 or self.log_first_step:
            self.log_img(trainer, pl_module, batch, batch_idx, split="train")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if pl_module.global_step > 0 and not trainer.sanity_checking:
            self.log_img(trainer, pl_module, batch, batch_idx, split="val")


class LearningRateLogger(pl.callbacks.LearningRateMonitor):
    """``main.LearningRateMonitor`` of the original configs: logs the lr every step."""

    def __init__(self, logging_interval="step", **kwargs):
        super().__init__(logging_interval=logging_interval, **kwargs)



class CUDACallback(Callback):
    """``main.CUDACallback``: epoch wall time, and peak accelerator memory when on CUDA."""

    def on_train_epoch_start(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._start = time.time()

    def on_train_epoch_end(self, trainer, pl_module):
        elapsed = time.time() - self._start
        message = f"epoch {trainer.current_epoch}: {elapsed:.2f} s"
        if pl_module.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            message += f", peak memory {peak:.0f} MiB"
        rank_zero_only(logger.info)(message)


class CompileNetwork(Callback):
    """Opt-in ``torch.compile`` of the denoising network for training (``nn.Module.compile``: the
    weights and checkpoint keys stay as they are). Enable it from the command line:
    ``lightning.callbacks.compile.target=imagebart.callbacks.CompileNetwork``; ``params`` go to
    ``torch.compile`` (e.g. ``mode: max-autotune``, ``backend: inductor``, the default)."""

    def __init__(self, **compile_kwargs):
        self.compile_kwargs = compile_kwargs

    def setup(self, trainer, pl_module, stage):
        network = getattr(pl_module, "transformer", None)
        if network is None:
            raise ValueError("lightning.callbacks.compile: CompileNetwork compiles a denoiser's 'transformer'; "
                             f"{type(pl_module).__name__} has none")
        network.compile(**self.compile_kwargs)
        rank_zero_only(logger.info)("compiling the network with torch.compile(%s)", self.compile_kwargs or "")
