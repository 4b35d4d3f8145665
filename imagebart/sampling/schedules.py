"""Per-scale sampling settings: one value or one per scale, in sampling order (scale T first).

The original streamlit app gave top-k and temperature that way; guidance scales and the drafts
verified per decoder pass (γ) follow it. Each ``check_*`` validates one value with a message that
names the setting.
"""

from __future__ import annotations

from typing import Any, Callable

from imagebart.util import is_number


def resolve_schedule(value, n_scales: int, name: str, check: Callable[[Any], Any]) -> list:
    """One value or a list of ``n_scales`` values (sampling order) -> a list, each passed through ``check``."""
    if hasattr(value, "tolist"):  # tensors, numpy arrays and scalars (e.g. np.linspace schedules)
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != n_scales:
            raise ValueError(f"{name} must be one value or a list of {n_scales} values (one per scale, in "
                             f"sampling order: scale {n_scales} first), got {len(value)} values {list(value)}")
        values = list(value)
    else:
        values = [value] * n_scales
    return [check(v) for v in values]


def check_top_k(value):
    if value is None:
        return None
    if not is_number(value) or not float(value).is_integer():
        raise ValueError(f"top_k values must be positive integers (or None for the config's), got {value!r}")
    if int(value) < 1:
        raise ValueError(f"top_k values must be >= 1, got {value!r}")
    return int(value)


def check_temperature(value):
    if not is_number(value) or not value > 0:
        raise ValueError(f"temperature values must be numbers > 0, got {value!r}")
    return float(value)


def check_guidance_scale(value):
    if not is_number(value) or not value >= 0:
        raise ValueError(f"guidance_scale values must be numbers >= 0 (1: plain conditional sampling), got {value!r}")
    return float(value)


def check_gamma(value):
    """None: each scale's default (γ on encoder-decoder scales, token by token on a decoder-only one)."""
    if value is None:
        return None
    if not is_number(value) or not float(value).is_integer() or int(value) < 0:
        raise ValueError(f"gamma (drafts verified per decoder pass) must be an int >= 0 (0: token by token), "
                         f"got {value!r}")
    return int(value)
