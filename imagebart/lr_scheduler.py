"""Learning-rate schedules as multiplicative factors for ``torch.optim.lr_scheduler.LambdaLR``,
and the denoisers' optimiser.

The released configs build the optimizer with a base lr of 1.0 and let the factor below be the
learning rate itself, so the numbers in ``scheduler_config`` are absolute learning rates.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from imagebart.util import instantiate_from_config, is_integer, is_number

logger = logging.getLogger(__name__)


def _check_non_negative(name: str, value) -> float:
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _check_steps(name: str, value) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # YAML users write 1.5e6
    if not is_integer(value):
        raise TypeError(f"{name} must be an int (a number of optimizer steps), got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class LambdaWarmUpCosineScheduler:
    """Linear warm-up from ``lr_start`` to ``lr_max``, then a half cosine down to ``lr_min``.

    Step ``n`` < ``warm_up_steps``: ``lr_start + (lr_max - lr_start) * n / warm_up_steps``.
    Afterwards, with ``s = min(1, (n - warm_up_steps) / (max_decay_steps - warm_up_steps))``:
    ``lr_min + (lr_max - lr_min) * (1 + cos(pi * s)) / 2``, so ``lr_min`` is reached at
    ``max_decay_steps`` and kept from then on. Use with an optimizer whose base lr is 1.0.
    ``verbosity_interval`` > 0 logs the previous factor every that many steps (0 or less: never).
    """

    def __init__(
        self,
        warm_up_steps: int,
        lr_min: float,
        lr_max: float,
        lr_start: float,
        max_decay_steps: int,
        verbosity_interval: int = 0,
    ):
        self.lr_warm_up_steps = _check_steps("warm_up_steps", warm_up_steps)
        self.lr_max_decay_steps = _check_steps("max_decay_steps", max_decay_steps)
        if self.lr_max_decay_steps <= self.lr_warm_up_steps:
            raise ValueError(
                f"max_decay_steps ({max_decay_steps}) must be larger than warm_up_steps "
                f"({warm_up_steps}): the cosine decay starts after the warm-up"
            )
        self.lr_min = _check_non_negative("lr_min", lr_min)
        self.lr_max = _check_non_negative("lr_max", lr_max)
        self.lr_start = _check_non_negative("lr_start", lr_start)
        if self.lr_min > self.lr_max:
            raise ValueError(f"lr_min ({lr_min}) must not exceed lr_max ({lr_max})")
        if not is_integer(verbosity_interval):
            raise TypeError(f"verbosity_interval must be an int, got {verbosity_interval!r}")
        self.verbosity_interval = verbosity_interval
        self.last_lr = 0.0  # the factor returned by the previous call (0 before the first)

    def schedule(self, n: int) -> float:
        """The lr factor at optimizer step ``n`` (0-based, as LambdaLR counts)."""
        if n < 0:
            raise ValueError(f"step n must be >= 0, got {n}")
        if self.verbosity_interval > 0 and n % self.verbosity_interval == 0:
            logger.info("step %d, previous lr factor %.4g", n, self.last_lr)
        if n < self.lr_warm_up_steps:
            # same operation order as the original, so factors agree to the last bit
            lr = (self.lr_max - self.lr_start) / self.lr_warm_up_steps * n + self.lr_start
        else:
            decay_steps = self.lr_max_decay_steps - self.lr_warm_up_steps
            frac = min((n - self.lr_warm_up_steps) / decay_steps, 1.0)
            lr = self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1.0 + math.cos(math.pi * frac))
        self.last_lr = lr
        return lr

    def __call__(self, n: int) -> float:
        return self.schedule(n)


# the optimiser the denoisers use


def adamw_with_schedule(network: torch.nn.Module, learning_rate: float, scheduler_config=None):
    """AdamW (0.9, 0.95), weight decay 0.01 on Linear weights only (fused on CUDA), and an optional
    ``{target, params}`` schedule whose output is the lr factor, stepped every optimizer step."""
    decay, no_decay = [], []
    for module in network.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                is_linear_weight = name == "weight" and isinstance(module, torch.nn.Linear)
                (decay if is_linear_weight else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    on_cuda = bool(decay or no_decay) and all(p.is_cuda for p in decay + no_decay)  # one fused kernel a step
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95), fused=on_cuda or None)
    if scheduler_config is None:
        return optimizer
    schedule = instantiate_from_config(scheduler_config)
    # the released configs pick base_learning_rate so that the scaled lr is 1.0 at their batch size
    scheduler = {"scheduler": LambdaLR(optimizer, lr_lambda=schedule.schedule), "interval": "step", "frequency": 1}
    return [optimizer], [scheduler]
