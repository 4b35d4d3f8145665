"""Weight layout for decoding on the CPU.

A decode step at batch 1 is a chain of matrix-vector products, so its time is the time to stream
every weight matrix once. PyTorch stores an ``nn.Linear`` weight as (out, in), row-major; on the
CPU (torch 2.13, 2 threads, the released FFHQ decoder sizes) the BLAS streams the same matrix
about 15-20 % faster when it is stored (in, out) row-major, i.e. the (out, in) weight
column-major. Restriding a weight changes neither its values nor its shape, only its strides, so
every caller, state dict and in-place update (EMA, ``load_state_dict``) keeps working; products
can differ from the row-major ones by float rounding (~1e-6). Any code that replaces ``.data``
just gets the default layout back, which is slower, not wrong.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUTS = ("row", "column")


def _linear_weights(module: nn.Module):
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and isinstance(layer.weight, torch.Tensor) and layer.weight.dim() == 2:
            yield layer.weight


def set_weight_layout(module: nn.Module, layout: str) -> nn.Module:
    """Store every ``nn.Linear`` weight of ``module`` row-major ("row", PyTorch's default) or
    column-major ("column", faster matvecs on the CPU); in place, values unchanged."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    with torch.no_grad():
        for weight in _linear_weights(module):
            if layout == "column" and weight.stride() != (1, weight.shape[0]):
                weight.data = weight.data.t().contiguous().t()  # (out, in) with strides (1, out)
            elif layout == "row" and not weight.is_contiguous():
                weight.data = weight.data.contiguous()
    return module


def weight_layout(module: nn.Module) -> str | None:
    """"row", "column", or None when the linear weights are mixed (or there are none)."""
    layouts = {"row" if w.is_contiguous() else "column" if w.stride() == (1, w.shape[0]) else None
               for w in _linear_weights(module)}
    return layouts.pop() if len(layouts) == 1 else None


def decoding_layout(device: torch.device) -> str:
    """The layout decode steps run fastest with on ``device``: column-major on the CPU (measured
    there); GPUs' GEMM kernels read either layout at full speed, so they keep PyTorch's."""
    return "column" if torch.device(device).type == "cpu" else "row"
