"""Exponential moving average of a model's weights, kept as buffers so it lands in checkpoints.

The state-dict layout is the original release's (``transformer_ema.*`` in its checkpoints):
one buffer per trainable parameter, named like the parameter with every ``.`` removed
(``encoder.token_emb.weight`` -> ``encodertoken_embweight``), plus ``decay`` (float32 scalar)
and ``num_updates`` (int32 scalar; -1 switches the warm-up off).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def shadow_name(param_name: str) -> str:
    """Buffer name of the average of ``param_name`` (buffer names may not contain dots)."""
    return param_name.replace(".", "")


class LitEma(nn.Module):
    """EMA of the trainable parameters of ``model``, with a warm-up on the decay.

    Each update uses ``decay_n = min(decay, (1 + n) / (10 + n))`` where n counts updates
    (starting at 1), so early averages are not dominated by the random initialisation.
    ``use_num_upates=False`` (sic: the original's spelling) uses ``decay`` from the first step.
    To evaluate with EMA weights: ``store(params)``, ``copy_to(model)``, run, ``restore(params)``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, use_num_upates: bool = True):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.register_buffer("decay", torch.tensor(decay, dtype=torch.float32))
        self.register_buffer(
            "num_updates", torch.tensor(0 if use_num_upates else -1, dtype=torch.int)
        )

        self.m_name2s_name: dict[str, str] = {}  # parameter name -> shadow buffer name
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            s_name = shadow_name(name)
            if s_name in self.m_name2s_name.values() or s_name in ("decay", "num_updates"):
                raise ValueError(
                    f"parameter {name!r} maps to the EMA buffer name {s_name!r}, which is taken; "
                    "rename the parameter"
                )
            self.m_name2s_name[name] = s_name
            self.register_buffer(s_name, param.detach().clone())

        self.collected_params: list[torch.Tensor] = []

    def _tracked(self, model: nn.Module):
        """(parameter, shadow buffer) pairs; every tracked name must exist in ``model``."""
        params = dict(model.named_parameters())
        missing = [name for name in self.m_name2s_name if name not in params]
        if missing:
            raise ValueError(
                f"model lacks {len(missing)} parameter(s) tracked by this EMA, e.g. {missing[:3]}"
            )
        buffers = dict(self.named_buffers())
        return [(params[name], buffers[s_name]) for name, s_name in self.m_name2s_name.items()]

    @torch.no_grad()
    def forward(self, model: nn.Module) -> None:
        """One EMA step: shadow <- shadow - (1 - decay_n) * (shadow - param)."""
        # computed on the buffers' device: no host sync per training step
        counting = self.num_updates >= 0  # -1 marks "no warm-up"
        self.num_updates += counting.to(self.num_updates.dtype)
        n = self.num_updates.float()
        warm_up = (1.0 + n) / (10.0 + n)
        decay = torch.where(counting, torch.minimum(self.decay, warm_up), self.decay)
        one_minus_decay = 1.0 - decay

        for param, shadow in self._tracked(model):
            # the average stays in its own dtype (fp32) even if the model runs in half precision
            shadow.sub_(one_minus_decay.to(shadow.dtype) * (shadow - param.to(shadow.dtype)))

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the tracked parameters of ``model`` with their averages."""
        for param, shadow in self._tracked(model):
            param.copy_(shadow)

    def store(self, parameters: Iterable[torch.Tensor]) -> None:
        """Remember copies of ``parameters`` so :meth:`restore` can put them back after EMA use."""
        self.collected_params = [param.detach().clone() for param in parameters]

    @torch.no_grad()
    def restore(self, parameters: Iterable[torch.Tensor]) -> None:
        """Copy the values saved by :meth:`store` back into ``parameters`` (same order)."""
        parameters = list(parameters)
        if len(parameters) != len(self.collected_params):
            raise ValueError(
                f"restore got {len(parameters)} parameters but store saved "
                f"{len(self.collected_params)}; pass the same parameters to both"
            )
        for saved, param in zip(self.collected_params, parameters):
            param.copy_(saved)
        self.collected_params = []
