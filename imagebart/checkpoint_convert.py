"""Rewrite checkpoints in our native format: renamed 2021 weights, optionally EMA weights only.

A released chain stores, per scale, the raw transformer, its EMA shadows and the first stage:
sampling needs only the EMA weights (put in the transformer's place) and one first stage.
"""

from __future__ import annotations

from typing import Mapping

import torch

from imagebart.modules.xtransformers.legacy import convert_legacy_checkpoint, is_legacy_state_dict

NATIVE_FORMAT_VERSION = 1


def ema_into_weights(state_dict: Mapping[str, torch.Tensor], model_prefix: str = "transformer.",
                     ema_prefix: str = "transformer_ema.") -> dict[str, torch.Tensor]:
    """Replace each transformer weight by its EMA shadow (LitEma naming: dots removed) and drop
    the shadows; buffers without a shadow (e.g. attention masks) stay as they are."""
    shadows = {k[len(ema_prefix):]: v for k, v in state_dict.items() if k.startswith(ema_prefix)}
    if not shadows:
        raise ValueError(f"the checkpoint has no EMA weights ({ema_prefix}* entries)")
    out = {}
    for key, value in state_dict.items():
        if key.startswith(ema_prefix):
            continue
        if key.startswith(model_prefix):
            shadow = key[len(model_prefix):].replace(".", "")
            value = shadows.get(shadow, value)
        out[key] = value
    return out


def to_native(state_dict: Mapping[str, torch.Tensor], ema_only: bool = False,
              drop_first_stage: bool = False) -> dict[str, torch.Tensor]:
    """Our names for an original-format denoiser state dict, then the requested pruning."""
    state_dict = dict(state_dict)
    if is_legacy_state_dict(state_dict, prefix="transformer."):
        state_dict = convert_legacy_checkpoint(state_dict, "xtransformer")
    if ema_only:
        state_dict = ema_into_weights(state_dict)
    if drop_first_stage:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("first_stage_model.")}
    return state_dict


def first_stage_only(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A VQGAN's own weights from a VQGAN training checkpoint or a denoiser checkpoint
    (drops the loss / discriminator, strips ``first_stage_model.``)."""
    prefix = "first_stage_model."
    if any(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    parts = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
    kept = {k: v for k, v in state_dict.items() if k.startswith(parts)}
    if not kept:
        raise ValueError("the checkpoint holds no VQGAN weights (encoder.*, decoder.*, quantize.* ...)")
    return kept


def native_checkpoint(state_dict: Mapping[str, torch.Tensor], global_step=None, **info) -> dict:
    """The dict we save: the state dict plus a little provenance."""
    return {"state_dict": dict(state_dict), "global_step": int(global_step or 0),
            "imagebart_format": NATIVE_FORMAT_VERSION, **info}
