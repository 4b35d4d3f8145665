"""Loading, merging and checking YAML configs in the original's schema.

A training config has three sections: ``model`` (``base_learning_rate``, ``target``,
``params``), ``data`` (``target``, ``params``) and ``lightning`` (``trainer``, ``callbacks``,
optionally ``logger`` and ``modelcheckpoint``). Several files merge left to right, then
``key.sub=value`` overrides from the command line win.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from imagebart.util import get_obj_from_str, is_integer, is_number

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
    for item in dotlist:  # one at a time, so that the message names the bad one
        try:
            OmegaConf.from_dotlist([item])
        except Exception as err:  # noqa: BLE001 - OmegaConf and yaml errors alike
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot parse the override {item!r} ({first}); expected key.sub=value with "
                              "a YAML value, e.g. model.params.n_scales=3 or 'data.params.size=[1,2]'") from None
    return OmegaConf.from_dotlist(dotlist)


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
    check_training_values(config)


# value types, read from the signatures of the classes the config builds

SIMPLE_TYPES = {bool: ("true/false", lambda v: isinstance(v, bool)),
                int: ("an integer", is_integer),
                float: ("a number", is_number),
                str: ("a string", lambda v: isinstance(v, str))}


def _simple_types(hint) -> tuple | None:
    """The plain types (bool, int, float, str; None) a hint allows, or None for anything richer."""
    if hint in SIMPLE_TYPES:
        return (hint,)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        allowed = tuple(a for a in typing.get_args(hint) if a is not type(None))
        if allowed and all(a in SIMPLE_TYPES for a in allowed):
            return allowed + ((type(None),) if type(None) in typing.get_args(hint) else ())
    return None


def _declared(build: Callable) -> tuple[dict, dict]:
    """Type hints and defaults of ``build``'s parameters; for a class, of every ``__init__`` along its
    MRO (a subclass taking ``*args, **kwargs`` passes them on to its parent's)."""
    hints, defaults = {}, {}
    functions = [vars(k)["__init__"] for k in build.__mro__ if "__init__" in vars(k)] if inspect.isclass(build) else [build]
    for function in functions:
        try:
            function_hints = typing.get_type_hints(function)
            parameters = inspect.signature(function).parameters
        except Exception:  # noqa: BLE001 - annotations we cannot resolve are not checked
            continue
        for name, hint in function_hints.items():
            hints.setdefault(name, hint)
        for name, parameter in parameters.items():
            defaults.setdefault(name, parameter.default)
    return hints, defaults


def check_value_types(values: Mapping[str, Any], build: Callable, key: str) -> None:
    """Every value whose parameter of ``build`` is annotated with a plain type (``bool``, ``int``,
    ``Optional[float]``, ...) must have that type: ``use_ema: maybe`` or ``max_steps: abc`` is named
    here instead of being taken as true, or failing steps later."""
    hints, defaults = _declared(build)
    for name, value in values.items():
        allowed = _simple_types(hints.get(name))
        if allowed is None:
            continue
        if value is None and (type(None) in allowed or defaults.get(name, inspect.Parameter.empty) is None):
            continue
        if any(t in SIMPLE_TYPES and SIMPLE_TYPES[t][1](value) for t in allowed):
            continue
        expected = " or ".join(SIMPLE_TYPES[t][0] if t in SIMPLE_TYPES else "null" for t in allowed)
        raise ConfigError(f"{key}.{name}: expected {expected}, got {value!r}")


def check_params(node: Any, key: str) -> None:
    """A ``{target, params}`` block and the blocks nested in its params: params is a mapping and
    its values have the types the target's constructor declares."""
    if not isinstance(node, DictConfig) or "target" not in node:
        return
    params = node.get("params")
    if params is None:
        return
    if not isinstance(params, DictConfig):
        raise ConfigError(f"{key}.params must be a mapping of parameter names to values, got {params!r}")
    try:
        build = get_obj_from_str(str(node.target))
    except Exception:  # noqa: BLE001 - an unknown target is named when it is built
        return
    try:
        values = OmegaConf.to_container(params, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}.params: {err}") from None
    check_value_types(values, build, f"{key}.params")
    for name in params:
        check_params(params[name], f"{key}.params.{name}")


def check_training_values(config: DictConfig) -> None:
    """The values main.py reads itself, and the types of every ``{target, params}`` block."""
    lr = config.model.get("base_learning_rate")
    if not is_number(lr) or not lr > 0:
        raise ConfigError(f"model.base_learning_rate: expected a positive number (e.g. 4.5e-06), got {lr!r}")
    batch_size = config.data.params.get("batch_size")
    if not is_integer(batch_size) or batch_size < 1:
        raise ConfigError(f"data.params.batch_size: expected a positive integer, got {batch_size!r}")
    check_params(config.model, "model")
    check_params(config.data, "data")
    check_params((config.get("lightning") or {}).get("logger"), "lightning.logger")
    # lightning.callbacks / modelcheckpoint are checked once merged with the defaults (imagebart.train)
