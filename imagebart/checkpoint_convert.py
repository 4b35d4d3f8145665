"""Rewrite checkpoints in our native format: renamed 2021 weights, optionally EMA weights only.

A released chain stores, per scale, the raw transformer, its EMA shadows and the first stage:
sampling needs only the EMA weights (put in the transformer's place) and one first stage.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Mapping

import torch

from imagebart.checkpoint_io import load_checkpoint, load_state_dict

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


# command line

CLI_HELP = "Write a checkpoint (ours or the original release's) in our native format.\n\n    # an official scale, EMA weights only, without its copy of the VQGAN (for sampling)\n    python scripts/convert_checkpoint.py models/ffhq_4_scales_geometric/scale2.ckpt out/scale2.ckpt \\\n        --ema_only --drop_first_stage\n    # the VQGAN weights alone, from a VQGAN training run or from any denoiser checkpoint\n    python scripts/convert_checkpoint.py logs/<run>/checkpoints/last.ckpt models/demo/vqgan.ckpt --first_stage_only\n\nLoading is safe (no arbitrary unpickling); 2021 x-transformers names become ours."


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=CLI_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="checkpoint to read")
    parser.add_argument("output", help="where to write the native checkpoint")
    parser.add_argument("--ema_only", action="store_true", help="keep the EMA weights (in the transformer's place) only")
    parser.add_argument("--drop_first_stage", action="store_true",
                        help="leave out first_stage_model.* (the sampling config's first stage provides it)")
    parser.add_argument("--first_stage_only", action="store_true", help="write only the VQGAN weights")
    parser.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser.parse_args(argv)


def cli(argv=None) -> int:
    """``scripts/convert_checkpoint.py``: returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = Path(args.output)
    if out.exists() and not args.force:
        logging.error("%s exists; pass --force to overwrite it", out)
        return 2
    if Path(args.input).resolve() == out.resolve():
        logging.error("input and output are the same file (%s): write elsewhere", out)
        return 2
    try:
        step = load_checkpoint(args.input).get("global_step", 0)
        state_dict = load_state_dict(args.input)
        if args.first_stage_only:
            state_dict = first_stage_only(state_dict)
        else:
            state_dict = to_native(state_dict, ema_only=args.ema_only, drop_first_stage=args.drop_first_stage)
    except (ValueError, FileNotFoundError) as err:
        logging.error("%s", err)
        return 2
    if args.half:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(native_checkpoint(state_dict, global_step=step, source=str(args.input),
                                 ema_only=bool(args.ema_only)), out)
    size = out.stat().st_size / 2**20
    logging.info("wrote %s (%d tensors, %.1f MiB)", out, len(state_dict), size)
    return 0
