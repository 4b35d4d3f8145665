"""What the apps' controls mean, without streamlit: the config path and per-scale schedules.

Schedules are lists of T values in SAMPLING order (first entry = scale T, last = scale 1), the
order :meth:`ImageBARTChain.sample` and :func:`edit` take. Range checks (top-k >= 1, capped at K;
temperature > 0) stay with the chain (``top_k_schedule`` / ``temperature_schedule``); here the
text is parsed (by the command lines' parser, so both read the same text the same way) and the
number of values checked, with messages meant for the page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from imagebart.cli.common import parse_number, parse_scale_values
from imagebart.util import check_positive_int, is_integer

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
    args = _script_args(argv, script)
    if "--config" in args:
        i = args.index("--config")
        if i + 1 < len(args):
            return args[i + 1]
    positional = [a for i, a in enumerate(args) if not a.startswith("-")
                  and not (i > 0 and args[i - 1] in VALUE_OPTIONS)]
    if positional:
        return positional[0]
    return environ.get(CONFIG_ENV) or None


VALUE_OPTIONS = ("--config", "--threads")  # options of the apps' command line that take a value


def _script_args(argv: Sequence[str], script) -> list:
    """The app's own arguments (``streamlit run <script> [--] <args>``); none under ``AppTest``."""
    args = list(argv[1:]) if argv and _same_file(argv[0], script) else []
    return [a for a in args if a != "--"]


def threads_from(argv: Sequence[str], script: str | os.PathLike) -> Optional[int]:
    """``--threads N`` on the app's command line (``streamlit run <script> <config> -- --threads 2``), or None;
    a value that is not a positive integer raises ValueError naming it."""
    args = _script_args(argv, script)
    if "--threads" not in args:
        return None
    i = args.index("--threads")
    value = args[i + 1] if i + 1 < len(args) else ""
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--threads must be a positive integer, got {value!r}")
    return int(value)


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return False


# per-scale schedules


def linear_values(start: float, end: float, n_scales: int, integer: bool) -> list:
    """``n_scales`` values from ``start`` (scale T) to ``end`` (scale 1), evenly spaced."""
    values = np.linspace(float(start), float(end), n_scales)
    return [int(round(v)) for v in values] if integer else [float(v) for v in values]


def build_schedule(mode: str, n_scales: int, integer: bool, name: str, constant=None, start=None, end=None,
                   text: Optional[str] = None) -> list:
    """One list of ``n_scales`` values (sampling order) from the schedule controls' state."""
    if mode == "constant":
        value = parse_number(str(constant), name, integer)
        return [value] * n_scales
    if mode == "linear":
        first, last = parse_number(str(start), name, integer), parse_number(str(end), name, integer)
        return linear_values(first, last, n_scales, integer)
    if mode == "per scale":
        values = parse_scale_values(text, name, integer)
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
    if not is_integer(label):
        raise ValueError(f"class label must be a whole number, got {label!r}")
    return int(label)


def runs_seeds(seed: int, n_runs: int, seed_of: Callable[[int, int], int]) -> list:
    """The generator seed of each run (``seed_of(seed, run)``), checked up front."""
    seed = check_positive_int("seed", seed, minimum=0)
    n_runs = check_positive_int("number of runs", n_runs)
    return [seed_of(seed, run) for run in range(n_runs)]


# results and the inputs that made them


def fingerprint(*values) -> str:
    """A digest of what produced a result (tensors by dtype, shape and bytes, the rest by ``repr``), so a
    page can tell results of the current inputs from results of earlier ones."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for value in values:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.numpy().tobytes())
        else:
            digest.update(repr(value).encode())
        digest.update(b"\x00")
    return digest.hexdigest()
