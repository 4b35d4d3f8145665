"""What the apps' controls mean, without streamlit: the config path and per-scale schedules.

Schedules are lists of T values in SAMPLING order (first entry = scale T, last = scale 1), the
order :meth:`ImageBARTChain.sample` and :func:`edit` take. Range checks (top-k >= 1, capped at K;
temperature > 0) stay with the chain (``top_k_schedule`` / ``temperature_schedule``); here the
text is parsed and the number of values checked, with messages meant for the page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

CONFIG_ENV = "IMAGEBART_SAMPLING_CONFIG"  # the config path where no command line is given (AppTest)
SCHEDULE_MODES = ("per scale", "constant", "linear")


# the sampling config


def config_path_from(argv: Sequence[str], script: str | os.PathLike,
                     environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The sampling config named on ``streamlit run <script> <config>``, else ``$IMAGEBART_SAMPLING_CONFIG``.

    ``streamlit run`` sets ``sys.argv = [script, *args]``; the command line is only read when
    ``argv[0]`` is this script, because under ``AppTest`` ``sys.argv`` belongs to pytest.
    ``--config <path>`` is accepted as well as a bare path.
    """
    args = list(argv[1:]) if argv and _same_file(argv[0], script) else []
    args = [a for a in args if a != "--"]
    if "--config" in args:
        i = args.index("--config")
        if i + 1 < len(args):
            return args[i + 1]
    positional = [a for a in args if not a.startswith("-")]
    if positional:
        return positional[0]
    return environ.get(CONFIG_ENV) or None


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return False


# per-scale schedules


def _cast(item: str, integer: bool, name: str):
    try:
        value = float(item)
    except ValueError:
        raise ValueError(f"{name}: {item!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{name}: {item!r} is not a finite number")
    if integer:
        if not value.is_integer():
            raise ValueError(f"{name}: {item!r} is not a whole number")
        return int(value)
    return value


def parse_values(text: str, integer: bool, name: str) -> list:
    """``"10, 20,30"`` -> [10, 20, 30]; a message naming the bad entry otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: enter one number per scale, separated by commas")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError(f"{name}: empty entry in {text!r} (separate the values by single commas)")
    return [_cast(item, integer, name) for item in items]


def linear_values(start: float, end: float, n_scales: int, integer: bool) -> list:
    """``n_scales`` values from ``start`` (scale T) to ``end`` (scale 1), evenly spaced."""
    values = np.linspace(float(start), float(end), n_scales)
    return [int(round(v)) for v in values] if integer else [float(v) for v in values]


def build_schedule(mode: str, n_scales: int, integer: bool, name: str, constant=None, start=None, end=None,
                   text: Optional[str] = None) -> list:
    """One list of ``n_scales`` values (sampling order) from the schedule controls' state."""
    if mode == "constant":
        value = _cast(str(constant), integer, name)
        return [value] * n_scales
    if mode == "linear":
        first, last = _cast(str(start), integer, name), _cast(str(end), integer, name)
        return linear_values(first, last, n_scales, integer)
    if mode == "per scale":
        values = parse_values(text, integer, name)
        if len(values) != n_scales:
            raise ValueError(f"{name}: expected {n_scales} values (one per scale, scale {n_scales} first), got "
                             f"{len(values)}: {text!r}")
        return values
    raise ValueError(f"{name}: schedule mode must be one of {list(SCHEDULE_MODES)}, got {mode!r}")


def format_values(values: Sequence) -> str:
    """The text a per-scale input starts with: ``[256, 256, 100]`` -> ``"256, 256, 100"``."""
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def scale_labels(n_scales: int) -> list:
    """Column names of a schedule in sampling order: ``["t=3", "t=2", "t=1"]``."""
    return [f"t={t}" for t in range(n_scales, 0, -1)]


def class_label_value(mode: str, label: Optional[int] = None):
    """The ``class_label`` argument from the class picker: an int, or "random"."""
    if mode == "random":
        return "random"
    if label is None or isinstance(label, bool) or not float(label).is_integer():
        raise ValueError(f"class label must be a whole number, got {label!r}")
    return int(label)


def runs_seeds(seed: int, n_runs: int, seed_of: Callable[[int, int], int]) -> list:
    """The generator seed of each run (``seed_of(seed, run)``), checked up front."""
    if isinstance(seed, bool) or not float(seed).is_integer() or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if isinstance(n_runs, bool) or not float(n_runs).is_integer() or n_runs < 1:
        raise ValueError(f"number of runs must be a whole number >= 1, got {n_runs!r}")
    return [seed_of(int(seed), run) for run in range(int(n_runs))]
