"""Config wiring: build any object from ``{target, params}``.

This is the only place that turns strings into classes. Configs written for the original
release name modules that do not exist here (taming's datasets, the original ``main``); those
targets resolve through :data:`LEGACY_TARGETS`, one explicit table, instead of shadowing the
packages they came from.
"""

from __future__ import annotations

import importlib
import numbers
from typing import Any, Mapping

import torch

# helpers


def exists(x):
    return x is not None


def default(x, d):
    return x if exists(x) else d


def is_integer(value) -> bool:
    """A true integer (Python or numpy), not a bool: what counts, batch sizes and labels must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a ValueError naming ``name``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_device() -> torch.device:
    """The device used when none is named: the first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# legacy config targets -> the class that does the same job here

LEGACY_TARGETS: dict[str, str] = {
    # the original's training script
    "main.DataModuleFromConfig": "imagebart.data.datamodule.DataModuleFromConfig",
    "main.ImageLogger": "imagebart.callbacks.ImageLogger",
    "main.SetupCallback": "imagebart.callbacks.SetupCallback",
    "main.LearningRateMonitor": "imagebart.callbacks.LearningRateLogger",
    "main.CUDACallback": "imagebart.callbacks.CUDACallback",
    # taming-transformers datasets (need torchvision/albumentations there; ours do not)
    "taming.data.faceshq.FFHQTrain": "imagebart.data.ffhq.FFHQTrain",
    "taming.data.faceshq.FFHQValidation": "imagebart.data.ffhq.FFHQValidation",
    "taming.data.imagenet.ImageNetTrain": "imagebart.data.imagenet.ImageNetTrain",
    "taming.data.imagenet.ImageNetValidation": "imagebart.data.imagenet.ImageNetValidation",
    # taming's losses (its module imports the whole taming training stack)
    "taming.modules.losses.vqperceptual.DummyLoss": "imagebart.modules.losses.vqloss.DummyLoss",
    "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator": (
        "imagebart.modules.losses.vqloss.VQLPIPSWithDiscriminator"
    ),
    # taming's VQGAN training module (imports Lightning 1.x there)
    "taming.models.vqgan.VQModel": "imagebart.models.vqgan_training.VQModel",
    # the original kept its class conditioner in imagebart/util.py
    "imagebart.util.ClassProvider": "imagebart.modules.conditioners.ClassProvider",
}


def resolve_target(target: str) -> str:
    """The importable dotted path for ``target`` (legacy names mapped through the table)."""
    return LEGACY_TARGETS.get(target, target)


def get_obj_from_str(string: str, reload: bool = False) -> Any:
    """Import ``package.module.Name`` and return ``Name``, with an error that names the target."""
    path = resolve_target(string)
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"target {string!r} is not a dotted path like 'package.module.Class'")
    try:
        module = importlib.import_module(module_name)
        if reload:
            module = importlib.reload(module)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"unknown target {string!r}: cannot import module {module_name!r} ({err})"
        ) from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ValueError(
            f"unknown target {string!r}: module {module_name!r} has no attribute {attr!r}"
        ) from err


def instantiate_from_config(config: Mapping[str, Any] | None, **extra_params) -> Any:
    """Build ``target(**params, **extra_params)``; a config without ``target`` is an error.

    The original returned ``None`` for the strings ``__is_first_stage__`` and
    ``__is_unconditional__``; we keep that so its configs load unchanged.
    """
    if config in ("__is_first_stage__", "__is_unconditional__"):
        return None
    if not isinstance(config, Mapping) or "target" not in config:
        raise ValueError(
            f"expected a config with a 'target' key (and optional 'params'), got {config!r}"
        )
    unknown = set(config.keys()) - {"target", "params", "base_learning_rate"}
    if unknown:
        raise ValueError(
            f"config for target {config['target']!r} has unknown keys {sorted(unknown)}; "
            "expected only 'target' and 'params'"
        )
    cls = get_obj_from_str(config["target"])
    params = dict(config.get("params") or {})
    params.update(extra_params)
    try:
        return cls(**params)
    except TypeError as err:
        # a misspelled or missing parameter: name the target so the user finds the YAML block
        if "argument" in str(err):
            raise TypeError(f"cannot build {config['target']!r} from its params: {err}") from err
        raise
