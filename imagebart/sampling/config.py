"""Sampling configs in the original's schema: one checkpoint and one training config per scale.

```yaml
checkpoints: [models/x/scale1.ckpt, models/x/scale2.ckpt, ...]   # scale 1 (p(x_0 | x_1)) first
configs:     [configs/x/scale1.yaml, configs/x/scale2.yaml, ...]
```
Paths are relative to the working directory (as in the original) or absolute. A jointly
trained model (one network for every t, ``single_scale`` absent) may be listed once.
The original's optional ``metrics`` section is accepted and ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from imagebart.config import ConfigError, load_config

logger = logging.getLogger(__name__)

SAMPLING_KEYS = ("checkpoints", "configs")
IGNORED_KEYS = ("metrics",)  # the original's app read metrics.savepath; nothing to do here


@dataclass(frozen=True)
class SamplingConfig:
    """Resolved paths of a chain, scale 1 first."""

    checkpoints: tuple[Path, ...]
    configs: tuple[Path, ...]
    source: str  # the sampling config file (or "<mapping>") for error messages

    def __len__(self) -> int:
        return len(self.checkpoints)

    def load_scale_config(self, index: int) -> DictConfig:
        """The training config of list entry ``index`` (0 = scale 1), checked for a ``model`` block."""
        path = self.configs[index]
        config = load_config(path)
        model = config.get("model")
        if not isinstance(model, DictConfig) or "target" not in model:
            raise ConfigError(f"{path} (configs[{index}] of {self.source}) has no 'model' section with a "
                              "'target'; expected a training config such as configs/demo/scale1.yaml")
        if not isinstance(model.get("params"), DictConfig):
            raise ConfigError(f"{path} (configs[{index}] of {self.source}) has no 'model.params' mapping")
        return config

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "checkpoints": [str(p) for p in self.checkpoints],
                "configs": [str(p) for p in self.configs]}


def _resolve(entry: Any, key: str, index: int, source: str, base: Path | None) -> Path:
    if not isinstance(entry, (str, Path)) or not str(entry):
        raise ConfigError(f"{key}[{index}] in {source} must be a file path, got {entry!r}")
    path = Path(entry).expanduser()
    if path.is_file():
        return path.resolve()
    hint = ""
    if base is not None and not path.is_absolute() and (base / path).is_file():
        hint = (f"; it exists relative to the sampling config's folder ({base / path}), but paths are "
                "relative to the working directory: run from there or make the path absolute")
    raise FileNotFoundError(f"{key}[{index}] = {str(entry)!r} in {source} does not exist (working directory "
                            f"{Path.cwd()}){hint}")


def load_sampling_config(config_or_path: str | Path | Mapping[str, Any]) -> SamplingConfig:
    """Read and check a sampling config (a YAML path or an already loaded mapping)."""
    base = None
    if isinstance(config_or_path, (str, Path)):
        source = str(config_or_path)
        raw = load_config(config_or_path)  # ConfigError naming the file if missing / malformed
        base = Path(config_or_path).resolve().parent
    elif isinstance(config_or_path, Mapping):
        source, raw = "<sampling config mapping>", config_or_path
    else:
        raise TypeError(f"expected a sampling config path or mapping, got {type(config_or_path).__name__}")
    if isinstance(raw, (DictConfig, ListConfig)):
        raw = OmegaConf.to_container(raw, resolve=True)

    unknown = sorted(set(raw) - set(SAMPLING_KEYS) - set(IGNORED_KEYS))
    if unknown:
        raise ConfigError(f"sampling config {source} has unknown keys {unknown}; expected 'checkpoints' and "
                          "'configs' (lists, scale 1 first)")
    lists = {}
    for key in SAMPLING_KEYS:
        value = raw.get(key)
        if value is None:
            raise ConfigError(f"sampling config {source} lacks the key {key!r} (a list, scale 1 first)")
        if isinstance(value, (str, Path)) or not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key!r} in sampling config {source} must be a non-empty list of paths, "
                              f"got {value!r}")
        lists[key] = value
    if len(lists["checkpoints"]) != len(lists["configs"]):
        raise ConfigError(f"sampling config {source} lists {len(lists['checkpoints'])} checkpoints but "
                          f"{len(lists['configs'])} configs; expected one of each per scale")
    resolved = {key: tuple(_resolve(e, key, i, source, base) for i, e in enumerate(entries))
                for key, entries in lists.items()}
    return SamplingConfig(checkpoints=resolved["checkpoints"], configs=resolved["configs"], source=source)
