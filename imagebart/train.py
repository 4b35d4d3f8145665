"""Training behind ``main.py``: the original's runs on Lightning 2.

:func:`train` merges the configs left to right, applies ``key.sub=value`` overrides, builds model,
data and trainer from the config, and trains into ``<logdir>/<YYYY-MM-DDTHH-MM-SS>_<name>/``.
It takes options already parsed (by :mod:`imagebart.cli.train`, or built by hand in a notebook).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import os
import pdb
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from imagebart.callbacks import SetupCallback
from imagebart.checkpoint_saving import AtomicCheckpointIO
from imagebart.config import (ConfigError, check_params, check_training_config, check_value_types,
                              merge_configs)
from imagebart.logging_resume import ResumableCSVLogger
from imagebart.resume import check_checkpoint_fits, read_resume_checkpoint, resolve_resume  # noqa: F401
from imagebart.util import instantiate_from_config, is_integer

logger = logging.getLogger("imagebart")

RUN_TIMESTAMP_ENV = "IMAGEBART_RUN_TIMESTAMP"


# Lightning 2 trainer settings

# Lightning 1.x trainer keys that old configs carry and that have no meaning any more
DROPPED_TRAINER_KEYS = ("weights_summary", "progress_bar_refresh_rate", "flush_logs_every_n_steps",
                        "terminate_on_nan", "auto_select_gpus", "replace_sampler_ddp")

PRECISION_ALIASES = {"bf16": "bf16-mixed", "16": "16-mixed", "32": "32-true", "64": "64-true"}


def parse_gpus(gpus) -> dict[str, Any]:
    """The original's ``--gpus`` string -> Lightning 2 ``accelerator`` / ``devices``.

    ``"0,"`` -> GPU 0; ``"0,1"`` -> GPUs 0 and 1; ``"2"`` -> two GPUs; ``"0"``, ``""`` or ``None``
    -> CPU (Lightning 1's rule: a bare number is a count, a comma makes it a list of ids).
    """
    if gpus is None:
        return {"accelerator": "cpu", "devices": 1}
    if is_integer(gpus):
        gpus = str(gpus)
    if not isinstance(gpus, str):  # a YAML list of ids
        ids = [int(g) for g in gpus]
        return {"accelerator": "gpu", "devices": ids} if ids else {"accelerator": "cpu", "devices": 1}
    text = str(gpus).strip()
    if not text:
        return {"accelerator": "cpu", "devices": 1}
    try:
        if "," in text:
            ids = [int(g) for g in text.split(",") if g.strip()]
            return {"accelerator": "gpu", "devices": ids} if ids else {"accelerator": "cpu", "devices": 1}
        count = int(text)
    except ValueError as err:
        raise ConfigError(f"--gpus {gpus!r}: expected a comma list of GPU ids like '0,' or '0,1'") from err
    if count == 0:
        return {"accelerator": "cpu", "devices": 1}
    return {"accelerator": "gpu", "devices": count}  # -1 = all GPUs


def num_processes(trainer_config: dict) -> int:
    """How many processes train together (for lr scaling): devices x nodes."""
    devices = trainer_config.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, str):
        count = len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    else:
        count = int(devices)
    if count == -1:
        count = torch.cuda.device_count() if trainer_config.get("accelerator") == "gpu" else 1
    return max(count, 1) * int(trainer_config.get("num_nodes", 1) or 1)


# the run


@dataclass
class Run:
    """Everything decided before the trainer exists: paths, merged config, resume point.

    ``opt`` holds the options of ``main.py``'s command line (see :mod:`imagebart.cli.train`);
    ``opt.trainer_options`` are the Lightning Trainer options given there (None left out).
    """

    opt: Any
    now: str
    name: str
    logdir: Path
    config: DictConfig
    lightning_config: DictConfig
    resume_ckpt: Path | None = None
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def ckptdir(self) -> Path:
        return self.logdir / "checkpoints"

    @property
    def cfgdir(self) -> Path:
        return self.logdir / "configs"


def prepare_run(opt: Any, overrides: Sequence[str] = ()) -> Run:
    """Run directory, merged config (``overrides``: ``key.sub=value`` items) and resume point."""
    # DDP re-launches this script once per extra device: the children take the parent's
    # timestamp from the environment so that all ranks agree on one run directory
    is_ddp_child = os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"
    now = os.environ.get(RUN_TIMESTAMP_ENV) if is_ddp_child else None
    now = now or datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    os.environ[RUN_TIMESTAMP_ENV] = now
    if opt.name and opt.resume:
        raise ConfigError("-n/--name and -r/--resume cannot be used together: a resumed run keeps its directory")
    resume_ckpt = None
    if opt.resume:
        logdir, resume_ckpt = resolve_resume(opt.resume)
        saved = sorted((logdir / "configs").glob("*.yaml"))
        if not saved:
            raise ConfigError(f"--resume {opt.resume}: {logdir / 'configs'} holds no saved configs")
        opt.base = [str(p) for p in saved] + list(opt.base)
        name = logdir.name
    else:
        if not opt.base:
            raise ConfigError("no config given: pass --base path/to/config.yaml")
        if opt.name:
            suffix = "_" + opt.name
        else:
            suffix = "_" + Path(opt.base[0]).stem
        name = now + suffix + opt.postfix
        logdir = Path(opt.logdir) / name
    config = merge_configs(opt.base, list(overrides))
    lightning_config = config.pop("lightning", OmegaConf.create())
    config_with_lightning = OmegaConf.merge(config, {"lightning": lightning_config})
    check_training_config(config_with_lightning, opt.base)
    return Run(opt=opt, now=now, name=name, logdir=logdir, config=config,
               lightning_config=lightning_config, resume_ckpt=resume_ckpt)


def trainer_settings(run: Run) -> dict[str, Any]:
    """Merge ``lightning.trainer`` with the command line and translate Lightning 1 keys."""
    trainer_config = OmegaConf.to_container(run.lightning_config.get("trainer", OmegaConf.create()), resolve=True)
    for key in DROPPED_TRAINER_KEYS:
        if trainer_config.pop(key, None) is not None:
            logger.warning("lightning.trainer.%s has no Lightning 2 equivalent and is ignored", key)
    legacy_backend = trainer_config.pop("distributed_backend", None)
    if trainer_config.get("accelerator") in ("ddp", "ddp_spawn", "dp"):
        legacy_backend = trainer_config.pop("accelerator")
    if "resume_from_checkpoint" in trainer_config:
        raise ConfigError("lightning.trainer.resume_from_checkpoint is gone in Lightning 2: use -r/--resume")
    if "gpus" in trainer_config:
        trainer_config.update(parse_gpus(trainer_config.pop("gpus")))
    trainer_config.update(getattr(run.opt, "trainer_options", {}))
    if run.opt.gpus is not None:
        trainer_config.update(parse_gpus(run.opt.gpus))
    trainer_config.setdefault("accelerator", "cpu")
    trainer_config.setdefault("devices", 1)
    devices = trainer_config["devices"]
    if isinstance(devices, str):
        try:
            trainer_config["devices"] = ([int(d) for d in devices.split(",") if d.strip()] if "," in devices
                                         else int(devices))
        except ValueError:
            raise ConfigError(f"--devices / lightning.trainer.devices {devices!r}: expected a count, -1 (all) "
                              "or a comma list of device ids like '0,1'") from None
    try:
        check_value_types(trainer_config, pl.Trainer, "lightning.trainer")
    except ConfigError as err:
        raise ConfigError(f"{err} (from the config or the --option of that name)") from None
    if trainer_config.get("accumulate_grad_batches", 1) < 1:
        raise ConfigError(f"lightning.trainer.accumulate_grad_batches (or --accumulate_grad_batches): expected an "
                          f"integer >= 1, got {trainer_config['accumulate_grad_batches']!r}")
    if str(trainer_config.get("precision")) in PRECISION_ALIASES:
        trainer_config["precision"] = PRECISION_ALIASES[str(trainer_config["precision"])]
    if num_processes(trainer_config) > 1 and "strategy" not in trainer_config:
        trainer_config["strategy"] = "ddp" if legacy_backend in (None, "ddp") else legacy_backend
    if trainer_config["accelerator"] == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            f"GPUs {trainer_config['devices']} were asked for (--gpus / lightning.trainer), but torch "
            "sees no CUDA device on this machine; leave out --gpus to train on the CPU"
        )
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(set(trainer_config) - accepted)
    if unknown:
        raise ConfigError(f"lightning.trainer has keys the Lightning {pl.__version__} Trainer does not take: {unknown}")
    return trainer_config


def build_logger(run: Run) -> list:
    """``csv/metrics.csv`` always (``scripts/plot_metrics.py`` reads it), and TensorBoard first when it
    is installed (the image logger writes to the first logger)."""
    if "logger" in run.lightning_config:
        return [instantiate_from_config(run.lightning_config.logger)]
    loggers = [ResumableCSVLogger(save_dir=str(run.logdir), name="csv", version="")]
    try:  # TensorBoard appends: each run adds an event file beside the earlier ones
        loggers.insert(0, pl.loggers.TensorBoardLogger(save_dir=str(run.logdir), name="tensorboard", version=""))
    except ModuleNotFoundError:  # neither tensorboard nor tensorboardX installed
        pass
    return loggers


def build_callbacks(run: Run, model, has_validation: bool) -> list:
    checkpoint_params = {
        "dirpath": str(run.ckptdir),
        "filename": "{epoch:06}-{step:09}",
        "save_last": True,
    }
    monitor = getattr(model, "monitor", None)
    if monitor and has_validation:
        logger.info("monitoring %s as checkpoint metric", monitor)
        checkpoint_params.update(monitor=monitor, save_top_k=3)
    checkpoint_cfg = OmegaConf.merge(
        {"target": "pytorch_lightning.callbacks.ModelCheckpoint", "params": checkpoint_params},
        run.lightning_config.get("modelcheckpoint", OmegaConf.create()),
    )
    defaults = {
        "setup_callback": {
            "target": "imagebart.callbacks.SetupCallback",
            "params": {"resume": bool(run.opt.resume), "now": run.now, "logdir": str(run.logdir),
                       "ckptdir": str(run.ckptdir), "cfgdir": str(run.cfgdir), "config": run.config,
                       "lightning_config": run.lightning_config},
        },
        "image_logger": {
            "target": "imagebart.callbacks.ImageLogger",
            "params": {"batch_frequency": 750, "max_images": 4, "clamp": True},
        },
        "learning_rate_logger": {"target": "imagebart.callbacks.LearningRateLogger",
                                 "params": {"logging_interval": "step"}},
        "checkpoint_callback": checkpoint_cfg,
    }
    callbacks_cfg = OmegaConf.merge(defaults, run.lightning_config.get("callbacks", OmegaConf.create()))
    callbacks = []
    for name in callbacks_cfg:
        key = "lightning.modelcheckpoint" if name == "checkpoint_callback" else f"lightning.callbacks.{name}"
        check_params(callbacks_cfg[name], key)
        try:
            callbacks.append(instantiate_from_config(callbacks_cfg[name]))
        except (MisconfigurationException, ValueError, TypeError) as err:
            raise ConfigError(f"{key}: {err}") from None
    return callbacks


def set_learning_rate(run: Run, model, trainer_config: dict) -> float:
    batch_size = run.config.data.params.batch_size
    base_lr = run.config.model.base_learning_rate
    accumulate = int(trainer_config.get("accumulate_grad_batches") or 1)
    processes = num_processes(trainer_config)
    if run.opt.scale_lr:
        model.learning_rate = accumulate * processes * batch_size * base_lr
        logger.info(
            "Setting learning rate to %.2e = %d (accumulate_grad_batches) * %d (devices x nodes) "
            "* %d (batch size) * %.2e (base_learning_rate)",
            model.learning_rate, accumulate, processes, batch_size, base_lr,
        )
    else:
        model.learning_rate = base_lr
        logger.info("Not scaling the learning rate: %.2e", model.learning_rate)
    return model.learning_rate


def check_data_fits(model, data) -> None:
    """A denoiser's first stage encodes images of one size into the token grid its network was
    built for: another image size is named here, not as an assertion deep in the transformer."""
    first_stage = getattr(model, "first_stage_model", None)
    encoder = getattr(first_stage, "encoder", None)
    if encoder is None or not hasattr(model, "latent_shape"):
        return
    side = int(encoder.resolution)
    for split, dataset in data.datasets.items():
        image = dataset[0].get(getattr(model, "first_stage_key", "image")) if len(dataset) else None
        shape = tuple(getattr(image, "shape", ()))
        if len(shape) == 3 and tuple(shape[:2]) != (side, side):
            raise ConfigError(
                f"data.params.{split}: images are {shape[0]}x{shape[1]}, but the first stage "
                f"(model.params.first_stage_config.params.ddconfig.resolution={side}) encodes {side}x{side} images "
                f"into the {model.latent_shape[0]}x{model.latent_shape[1]} tokens the network was built for; "
                f"set data.params.{split}.params.size={side}")


def build_trainer(run: Run, model, data, trainer_config: dict, resume_checkpoint) -> pl.Trainer:
    """The Trainer, with atomic checkpoint saves (and the resume checkpoint already read)."""
    has_validation = "validation" in getattr(data, "datasets", {})
    plugins = list(trainer_config.pop("plugins", None) or [])
    preloaded = (run.resume_ckpt, resume_checkpoint) if resume_checkpoint is not None else None
    plugins.append(AtomicCheckpointIO(preloaded))
    callbacks = build_callbacks(run, model, has_validation)
    try:
        trainer = pl.Trainer(**trainer_config, plugins=plugins, logger=build_logger(run), callbacks=callbacks,
                             default_root_dir=str(run.logdir))
    except (MisconfigurationException, ModuleNotFoundError, ValueError, TypeError) as err:
        raise ConfigError(f"lightning.trainer (or the Trainer --options): {err}") from None
    trainer.logdir = str(run.logdir)
    return trainer


def train(opt: Any, overrides: Sequence[str] = ()) -> pl.Trainer:
    """Build everything from the parsed options and train / test; returns the trainer (for tests).

    Raises :class:`imagebart.callbacks.TrainingStopped` when a signal stopped training (after
    saving ``last.ckpt``)."""
    run = prepare_run(opt, overrides)
    # a resume reads its checkpoint first: an unusable one is named before anything is built
    resume_checkpoint = read_resume_checkpoint(run.resume_ckpt) if run.resume_ckpt else None
    pl.seed_everything(run.opt.seed, workers=True)
    trainer_config = trainer_settings(run)
    run.lightning_config.trainer = trainer_config

    model = instantiate_from_config(run.config.model)
    if resume_checkpoint is not None:
        check_record = not getattr(run.opt, "ignore_checkpoint_record", False)
        check_checkpoint_fits(model, resume_checkpoint, run.resume_ckpt, check_record)
        model.check_resumed_checkpoint = False  # checked just now, on the very dict Lightning restores
    data = instantiate_from_config(run.config.data)
    data.setup()  # fail on missing or empty data now, before the run directory exists
    check_data_fits(model, data)
    set_learning_rate(run, model, trainer_config)
    trainer = build_trainer(run, model, data, trainer_config, resume_checkpoint)
    resume = str(run.resume_ckpt) if run.resume_ckpt else None
    if run.resume_ckpt and not run.opt.train:
        logger.warning("-r without -t: nothing is trained (the run stays at step %d); add -t to continue "
                       "training: python main.py -r %s -t", resume_checkpoint["global_step"], run.logdir)
    try:
        if run.opt.train:
            # weights_only=False: a resumed run needs the optimizer and loop state; our CheckpointIO reads
            # every file with torch's safe loader anyway (imagebart.checkpoint_io)
            trainer.fit(model, data, ckpt_path=resume, weights_only=False)
        if not run.opt.no_test and not trainer.interrupted and "test" in getattr(data, "datasets", {}):
            # without -t, a resumed run tests the checkpoint's weights, not freshly built ones
            trainer.test(model, data, ckpt_path=None if run.opt.train else resume, weights_only=False)
    except SystemExit:
        if any(isinstance(c, SetupCallback) and c.hard_interrupted for c in trainer.callbacks):
            raise KeyboardInterrupt from None  # Lightning turns a Ctrl-C into exit(1); keep it a Ctrl-C
        raise
    except Exception:
        if run.opt.debug and trainer.global_rank == 0 and sys.stdin.isatty():
            pdb.post_mortem()
        raise
    finally:
        if run.opt.debug and not run.opt.resume and trainer.global_rank == 0 and run.logdir.exists():
            target = run.logdir.parent / "debug_runs" / run.logdir.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run.logdir), str(target))
            logger.info("debug run moved to %s", target)
    return trainer
