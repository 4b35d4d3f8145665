"""Opt-in int8 sampling on CPU: a decode step at batch 1 reads every decoder weight once, so storing
the weights of the linear layers in int8 (torch's dynamic quantisation: int8 weights with one scale
per tensor, activations quantised on the fly) reads a quarter of the bytes. Not exact: its cost in
token agreement and demo FID is measured in ``benchmarks/sampling.py --quantize`` and the README.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("int8",)


def quantize_network(network: nn.Module) -> nn.Module:
    """A copy of ``network`` whose ``nn.Linear`` layers are dynamic int8 linear layers (CPU only)."""
    with warnings.catch_warnings():  # torch.ao announces its move to torchao; the API still works
        warnings.filterwarnings("ignore", message=".*(deprecat|torchao).*")
        return torch.ao.quantization.quantize_dynamic(network, {nn.Linear}, dtype=torch.qint8)


def quantize_chain(chain, mode: str | None):
    """Quantise every denoiser of ``chain`` in place (``mode`` None: leave it); returns the chain."""
    if mode is None:
        return chain
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"--quantize must be one of {list(QUANTIZE_MODES)}, got {mode!r}")
    if chain.device.type != "cpu" or chain.offload:
        raise ValueError(f"--quantize {mode} runs on the CPU only (dynamic int8 linear layers); the chain is on "
                         f"{chain.device}{' with --offload' if chain.offload else ''}")
    for model in chain._unique_models():
        model.transformer = quantize_network(model.transformer)
    chain.quantized = mode
    logger.info("denoisers quantised to %s (dynamic, linear layers)", mode)
    return chain
