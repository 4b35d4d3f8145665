"""Loading, merging and checking YAML configs in the original's schema.

A training config has three sections: ``model`` (``base_learning_rate``, ``target``,
``params``), ``data`` (``target``, ``params``) and ``lightning`` (``trainer``, ``callbacks``,
optionally ``logger`` and ``modelcheckpoint``). Several files merge left to right, then
``key.sub=value`` overrides from the command line win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

TRAINING_SECTIONS = ("model", "data", "lightning")
LIGHTNING_SECTIONS = ("trainer", "callbacks", "logger", "modelcheckpoint")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file or key."""


def load_config(path: str | Path) -> DictConfig:
    """Read one YAML file; a missing or malformed file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError) as err:  # yaml errors are ValueErrors here
        raise ConfigError(f"cannot read config file {path} (expected a YAML mapping): {err}") from err
    except Exception as err:  # yaml.YAMLError does not derive from ValueError
        raise ConfigError(f"cannot parse YAML in {path}: {err}") from err
    if not isinstance(config, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return config


def parse_overrides(dotlist: Iterable[str]) -> DictConfig:
    """``["model.params.dim=64", ...]`` -> config; anything not ``key=value`` is an error."""
    dotlist = list(dotlist)
    for item in dotlist:
        key, sep, _ = item.partition("=")
        if not sep or not key or key.startswith("-"):
            raise ConfigError(
                f"cannot understand command-line argument {item!r}: expected a config override "
                "of the form key.sub=value or a known option (see --help)"
            )
    try:
        return OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse config overrides {dotlist}: {err}") from err


def merge_configs(paths: Sequence[str | Path], overrides: Iterable[str] = ()) -> DictConfig:
    """Merge ``paths`` left to right, then apply the command-line ``overrides``."""
    configs = [load_config(p) for p in paths]
    return OmegaConf.merge(*configs, parse_overrides(overrides))


def check_training_config(config: DictConfig, sources: Sequence[str | Path] = ()) -> None:
    """Fail early, naming the key, on the mistakes that would otherwise surface deep in training."""
    where = f" (from {', '.join(map(str, sources))})" if sources else ""
    unknown = [k for k in config.keys() if k not in TRAINING_SECTIONS]
    if unknown:
        raise ConfigError(
            f"unknown top-level config key(s) {unknown}{where}; expected only {list(TRAINING_SECTIONS)}"
        )
    for section in ("model", "data"):
        if section not in config:
            raise ConfigError(f"config has no '{section}' section{where}")
        if not isinstance(config[section], DictConfig) or "target" not in config[section]:
            raise ConfigError(f"config key '{section}' needs a 'target' (and 'params'){where}")
    if "base_learning_rate" not in config.model:
        raise ConfigError(f"config key 'model.base_learning_rate' is missing{where}")
    if "batch_size" not in config.data.get("params", {}):
        raise ConfigError(f"config key 'data.params.batch_size' is missing{where}")
    lightning = config.get("lightning") or {}
    unknown = [k for k in lightning.keys() if k not in LIGHTNING_SECTIONS]
    if unknown:
        raise ConfigError(
            f"unknown key(s) under 'lightning': {unknown}{where}; expected {list(LIGHTNING_SECTIONS)}"
        )
