"""Measured quality curves behind the metric-equalised schedules.

A curve table says how much a metric of decoded images degrades when every token is redrawn
with probability 1 - ᾱ. It is a JSON object::

    {
      "description": "optional free text",
      "alphacum": [1.0, 0.947, ..., 0.0],   # the ᾱ grid, N >= 2 finite values
      "FID":      [35.7, 47.5, ..., 201.3],  # one list of N finite values per metric
      "PSIM":     [1.85, 2.12, ..., 4.20],
      ...
    }

Metric names are case-sensitive and are what ``redraw_prob: "[dset_]bernoulli_<METRIC>"``
selects. This package ships ``in.json`` (ImageNet) and ``ffhq.json`` with FID, IS, PSNR, PSIM
and SSIM, written by ``scripts/write_schedule_curves.py`` from the original release's figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Union

from imagebart.util import is_number

CURVES_DIR = Path(__file__).resolve().parent

CurveTable = dict  # {"alphacum": [...], "<METRIC>": [...], ...}, plain lists of floats


def available_datasets() -> list[str]:
    """Names of the packaged curve tables (the ``dset`` in ``<dset>_bernoulli_<METRIC>``)."""
    return sorted(p.stem for p in CURVES_DIR.glob("*.json"))


def load_quality_curve(dset: str) -> CurveTable:
    """The packaged curve table of dataset ``dset`` (``"in"`` or ``"ffhq"``)."""
    path = CURVES_DIR / f"{dset}.json"
    if not path.is_file():
        raise ValueError(
            f"no packaged quality curve for dataset {dset!r}; available: {available_datasets()} "
            "(or pass curves=<path to a curve JSON>)"
        )
    return read_quality_curve(path)


def read_quality_curve(source: Union[str, Path, Mapping]) -> CurveTable:
    """A validated curve table from a JSON file path or an already loaded mapping."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"curve file {str(path)!r} does not exist")
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"curve file {str(path)!r} is not valid JSON: {err}") from err
        where = f"curve file {str(path)!r}"
    elif isinstance(source, Mapping):
        table, where = source, "curves mapping"
    else:
        raise TypeError(f"curves must be a path to a JSON file or a mapping, got {type(source).__name__}")

    if not isinstance(table, Mapping) or "alphacum" not in table:
        raise ValueError(f"{where} must be a JSON object with an 'alphacum' list and metric lists")
    out = {}
    for key, values in table.items():
        if key == "description":
            continue
        if not isinstance(values, (list, tuple)) or not all(_is_number(v) for v in values):
            raise ValueError(f"{where}: {key!r} must be a list of numbers")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{where}: {key!r} holds non-finite values")
        out[key] = [float(v) for v in values]
    n = len(out["alphacum"])
    if n < 2:
        raise ValueError(f"{where}: 'alphacum' needs at least 2 points, got {n}")
    for key, values in out.items():
        if len(values) != n:
            raise ValueError(f"{where}: {key!r} has {len(values)} values but 'alphacum' has {n}")
    if len(out) == 1:
        raise ValueError(f"{where} holds no metric list besides 'alphacum'")
    return out


def _is_number(v) -> bool:
    return is_number(v)
