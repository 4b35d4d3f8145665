"""The noise schedule of the multinomial (token-redraw) diffusion.

At step t every token is independently redrawn uniformly from the K codes with probability β_t
(t = 1..T, T = ``n_scales``; β_0 = 0 is a placeholder so that index t means step t). From β
follow α_t = 1 - β_t and ᾱ_t = ∏_{s<=t} α_s, the probability that a token still holds its
x_0 value apart from chance redraws.

``redraw_prob`` (the config key of the original release) selects β:

``"geometric"``
    β_t = 1 / (T - t + 1): ᾱ_t = 1 - t/T falls linearly, and β_T = 1 so x_T is pure noise.
a number ``p`` (also a numeric string such as ``"0.1"``)
    β_t = p for every t >= 1, with 0 < p <= 1. β_T = 1 only for p = 1.
``"alphacum:a_0,a_1,...,a_T"``
    ᾱ given directly: exactly T + 1 comma-separated values, a_0 = 1, non-increasing, within
    [0, 1], and only a_T may be 0; then β_t = 1 - a_t / a_{t-1}.
``"[dset_]bernoulli_<METRIC>"``
    ᾱ chosen so that a measured quality curve (``METRIC`` of decoded images vs ᾱ) is cut into
    T equal steps: T + 1 metric levels evenly spaced from the curve's min to its max, ᾱ_t the
    first crossing of level t along the piecewise-linear curve (walking from its first point),
    then β_t = 1 - ᾱ_t / ᾱ_{t-1}. ``dset`` is ``in`` (ImageNet, the default) or ``ffhq``, the
    tables packaged in :mod:`imagebart.diffusion.curves`; ``METRIC`` is FID, IS, PSNR, PSIM
    or SSIM. Curves that are not monotone (the FID ones) give β that are not monotone either.

Custom curves: ``from_redraw_prob(..., curves=path_or_mapping)`` uses the given table instead
of the packaged one (the ``dset`` prefix is then only a label). The table is a JSON object
``{"alphacum": [...], "<METRIC>": [...], ...}`` of equally long lists of finite numbers,
optionally with a ``"description"`` string; see :mod:`imagebart.diffusion.curves`. The curve's
minimum should be its first point, at ᾱ = 1 (as measured curves are); otherwise the level-0
crossing ᾱ'_0 < 1 and β_1 = 1 - ᾱ'_1 / ᾱ'_0, exactly as the original code did.

Numbers match the original release: β are computed like it did (curve inversion in float64)
and stored in float32, α and ᾱ are computed from the float32 β in float32.

The schedule is an ``nn.Module`` whose β, α, ᾱ are (non-persistent) buffers: the denoiser, its
residual-scaled network and the forward process share ONE instance, which follows the model
across devices, so nothing copies or moves schedule tensors per call.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from imagebart.diffusion.curves import load_quality_curve, read_quality_curve
from imagebart.util import is_integer, is_number

CurvesArg = Optional[Union[str, Path, Mapping]]

REDRAW_PROB_FORMS = (
    "'geometric', a number p in (0, 1], 'alphacum:a_0,...,a_T', "
    "or '[dset_]bernoulli_<METRIC>' (dset 'in' or 'ffhq', METRIC e.g. FID or PSIM)"
)


class MultinomialSchedule(nn.Module):
    """β, α and ᾱ of the forward process, index t = 0..T (float32 buffers of length T + 1)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor

    def __init__(self, betas):
        super().__init__()
        betas = torch.as_tensor(betas)
        if not betas.is_floating_point():
            betas = betas.to(torch.float32)
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(
                f"betas must be a 1-D tensor [β_0, β_1, ..., β_T] with T >= 1, got shape {tuple(betas.shape)}"
            )
        if betas[0].item() != 0.0:
            raise ValueError(f"betas[0] must be 0 (placeholder for t = 0), got {betas[0].item()}")
        if not (torch.isfinite(betas).all() and (betas >= 0).all() and (betas <= 1).all()):
            raise ValueError(f"betas must lie in [0, 1], got {betas.tolist()}")
        alphas = 1.0 - betas
        # not persistent: rebuilt from the config; checkpoints record ᾱ under the denoiser's names
        self.register_buffer("betas", betas.clone(), persistent=False)  # (T+1,)
        self.register_buffer("alphas", alphas, persistent=False)  # (T+1,)
        self.register_buffer("alphas_cumprod", torch.cumprod(alphas, 0), persistent=False)  # (T+1,)

    @property
    def n_scales(self) -> int:
        """T, the number of forward steps (= reverse models in a chain)."""
        return self.betas.numel() - 1

    @classmethod
    def from_redraw_prob(cls, redraw_prob, n_scales: int, curves: CurvesArg = None) -> "MultinomialSchedule":
        """The schedule a config's ``redraw_prob`` and ``n_scales`` describe (see module docs)."""
        if not is_integer(n_scales) or n_scales < 1:
            raise ValueError(f"n_scales must be an integer >= 1, got {n_scales!r}")
        n_scales = int(n_scales)
        if redraw_prob is None:
            raise ValueError(f"redraw_prob is required: {REDRAW_PROB_FORMS}")
        if isinstance(redraw_prob, str):
            text = redraw_prob.strip()
            if text == "geometric":
                return cls(geometric_betas(n_scales))
            if text.startswith("alphacum:"):
                return cls(alphacum_betas(text[len("alphacum:"):], n_scales))
            p = _parse_float(text)
            if p is not None:
                return cls(constant_betas(p, n_scales))
            return cls(metric_betas(text, n_scales, curves))
        if is_number(redraw_prob):
            return cls(constant_betas(float(redraw_prob), n_scales))
        raise TypeError(
            f"redraw_prob must be a string or a number ({REDRAW_PROB_FORMS}), got {type(redraw_prob).__name__}"
        )

    @property
    def ends_in_noise(self) -> bool:
        """β_T = 1: x_T carries no information, so a decoder-only last scale is valid."""
        return self.betas[-1].item() == 1.0

    def extra_repr(self) -> str:
        betas = ", ".join(f"{b:.4g}" for b in self.betas.tolist())
        return f"n_scales={self.n_scales}, betas=[{betas}]"


# the forms of redraw_prob


def geometric_betas(n_scales: int) -> torch.Tensor:
    """β_t = 1/(T-t+1): [0, 1/T, 1/(T-1), ..., 1/2, 1]."""
    return torch.cat((torch.zeros(1), 1.0 / torch.arange(n_scales, 0, -1, dtype=torch.float32)))


def constant_betas(p: float, n_scales: int) -> torch.Tensor:
    if not (0.0 < p <= 1.0):
        raise ValueError(f"a numeric redraw_prob must lie in (0, 1], got {p}")
    return torch.cat((torch.zeros(1), torch.full((n_scales,), p, dtype=torch.float32)))


def alphacum_betas(spec: str, n_scales: int) -> torch.Tensor:
    """β from ``"a_0,a_1,...,a_T"`` (the part after ``alphacum:``)."""
    where = f"redraw_prob 'alphacum:{spec}'"
    alphacum = [_parse_float(a) for a in spec.split(",")]
    if any(a is None for a in alphacum):
        raise ValueError(f"{where}: expected comma-separated numbers a_0,a_1,...,a_T")
    if len(alphacum) != n_scales + 1:
        raise ValueError(f"{where}: expected n_scales + 1 = {n_scales + 1} values a_0..a_T, got {len(alphacum)}")
    if alphacum[0] != 1.0:
        raise ValueError(f"{where}: a_0 must be 1.0 (x_0 is clean), got {alphacum[0]}")
    if any(not (0.0 <= a <= 1.0) for a in alphacum) or any(b > a for a, b in zip(alphacum, alphacum[1:])):
        raise ValueError(f"{where}: values must be non-increasing and within [0, 1]")
    if 0.0 in alphacum[:-1]:
        raise ValueError(f"{where}: only the last value a_T may be 0 (β_t = 1 - a_t/a_(t-1))")
    betas = [0.0] + [1.0 - a_t / a_prev for a_prev, a_t in zip(alphacum[:-1], alphacum[1:])]
    return torch.tensor(betas, dtype=torch.float32)


def metric_betas(name: str, n_scales: int, curves: CurvesArg = None) -> torch.Tensor:
    """β from ``"[dset_]bernoulli_<METRIC>"``: equal metric steps along a quality curve."""
    parts = name.split("_")
    if len(parts) not in (2, 3):
        raise ValueError(f"unknown redraw_prob {name!r}; expected {REDRAW_PROB_FORMS}")
    dset, dist, metric = parts if len(parts) == 3 else ("in", *parts)
    if dist != "bernoulli":
        raise ValueError(
            f"redraw_prob {name!r}: only 'bernoulli' (token-redraw) curves define a multinomial "
            f"schedule, got {dist!r}; expected {REDRAW_PROB_FORMS}"
        )
    table = read_quality_curve(curves) if curves is not None else load_quality_curve(dset)
    if metric not in table or metric == "alphacum":
        metrics = sorted(k for k in table if k != "alphacum")
        raise ValueError(f"redraw_prob {name!r}: metric {metric!r} not in the curve table; available: {metrics}")
    alphas_cumprod = equalise_curve(table["alphacum"], table[metric], n_scales + 1)  # (T+1,) float64
    if not (alphas_cumprod[:-1] > 0).all():
        raise ValueError(f"redraw_prob {name!r}: the curve reaches ᾱ = 0 before the last step")
    betas = 1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1]  # (T,) float64
    if not ((betas >= 0).all() and (betas <= 1).all()):
        raise ValueError(f"redraw_prob {name!r}: the curve gives β outside [0, 1]: {betas.tolist()}")
    return torch.cat((torch.zeros(1, dtype=torch.float64), betas)).to(torch.float32)


def equalise_curve(alphacum, values, n_points: int) -> torch.Tensor:
    """ᾱ at the first crossings of ``n_points`` levels spread evenly over the curve's range."""
    x = torch.tensor(alphacum, dtype=torch.float64)  # (N,)
    y = torch.tensor(values, dtype=torch.float64)  # (N,)
    lo, hi = y.min().item(), y.max().item()
    if lo == hi:
        raise ValueError("the quality curve is constant; it cannot define a schedule")
    levels = torch.arange(n_points, dtype=torch.float64) * ((hi - lo) / (n_points - 1)) + lo  # (n,)
    levels[-1] = hi  # hit the max exactly, as numpy.linspace does
    d = y[None, :] - levels[:, None]  # (n, N) curve relative to each level
    crosses = torch.sign(d).diff(dim=1) != 0  # (n, N-1) segment i..i+1 crosses or touches
    # linear interpolation of the zero of d on each segment; a segment starting at 0 gives x_i
    ratio = (d[:, 1:] / d[:, :-1]).abs()  # (n, N-1)
    roots = x[:-1] + x.diff() / (ratio + 1)  # (n, N-1)
    if not crosses.any(dim=1).all():
        raise ValueError("the quality curve never reaches one of the levels")
    first = crosses.to(torch.int8).argmax(dim=1)  # (n,) first crossing segment
    return roots.gather(1, first[:, None])[:, 0]


def _parse_float(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
