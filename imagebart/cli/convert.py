"""Write a checkpoint (ours or the original release's) in our native format.

    # an official scale, EMA weights only, without its copy of the VQGAN (for sampling)
    python scripts/convert_checkpoint.py models/ffhq_4_scales_geometric/scale2.ckpt out/scale2.ckpt \\
        --ema_only --drop_first_stage
    # the VQGAN weights alone, from a VQGAN training run or from any denoiser checkpoint
    python scripts/convert_checkpoint.py logs/<run>/checkpoints/last.ckpt models/demo/vqgan.ckpt --first_stage_only

Loading is safe (no arbitrary unpickling); 2021 x-transformers names become ours.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from imagebart.checkpoint_io import load_checkpoint, load_state_dict
from imagebart.cli.common import run_command
from imagebart.loading import first_stage_only, native_checkpoint, to_native

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/convert_checkpoint.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="checkpoint to read")
    parser.add_argument("output", help="where to write the native checkpoint")
    parser.add_argument("--ema_only", action="store_true", help="keep the EMA weights (in the transformer's place) only")
    parser.add_argument("--drop_first_stage", action="store_true",
                        help="leave out first_stage_model.* (the sampling config's first stage provides it)")
    parser.add_argument("--first_stage_only", action="store_true", help="write only the VQGAN weights")
    parser.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser


def run(args: argparse.Namespace) -> Path:
    """Read, convert and write; refuses to overwrite unless ``--force``."""
    out = Path(args.output)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to overwrite it")
    if Path(args.input).resolve() == out.resolve():
        raise ValueError(f"input and output are the same file ({out}): write elsewhere")
    step = load_checkpoint(args.input).get("global_step", 0)
    state_dict = load_state_dict(args.input)
    if args.first_stage_only:
        state_dict = first_stage_only(state_dict)
    else:
        state_dict = to_native(state_dict, ema_only=args.ema_only, drop_first_stage=args.drop_first_stage)
    if args.half:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(native_checkpoint(state_dict, global_step=step, source=str(args.input),
                                 ema_only=bool(args.ema_only)), out)
    logger.info("wrote %s (%d tensors, %.1f MiB)", out, len(state_dict), out.stat().st_size / 2**20)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    run_command(get_parser, run, argv)
    return 0
