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
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from imagebart.checkpoint_io import load_checkpoint
from imagebart.cli.common import HelpFormatter, add_checkpoint_record_argument, check_outdir, run_command
from imagebart.config import load_config
from imagebart.images import atomic_path
from imagebart.loading import first_stage_only, load_denoiser, native_checkpoint, read_checkpoint, to_native

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/convert_checkpoint.py", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("input", help="checkpoint to read")
    parser.add_argument("output", help="where to write the native checkpoint")
    parser.add_argument("--ema_only", action="store_true", help="keep the EMA weights (in the transformer's place) only")
    parser.add_argument("--drop_first_stage", action="store_true",
                        help="leave out first_stage_model.* (the sampling config's first stage provides it)")
    parser.add_argument("--first_stage_only", action="store_true", help="write only the VQGAN weights")
    parser.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--config", default=None,
                        help="training config of the checkpoint: record its hyper-parameters in the output (for "
                             "checkpoints without a record, e.g. the original release's), checked by later loads")
    add_checkpoint_record_argument(parser)
    return parser


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same path, a symlink to it, or a hard link (same inode)."""
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_paths(args: argparse.Namespace) -> Path:
    """Refuse, before reading anything, every output that would destroy a file by accident."""
    source, out = Path(args.input), Path(args.output)
    if not source.is_file():
        raise FileNotFoundError(f"input {source}: no such checkpoint file")
    if same_file(source, out):
        raise ValueError(f"output {out} is the input {source} (the same file, a symlink or a hard link to it); "
                         "write the converted checkpoint elsewhere")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; expected a file path such as {out / source.name}")
    if out.exists() and not args.force:
        raise ValueError(f"output {out} exists; pass --force to overwrite it")
    check_outdir(out.parent, name=f"output {out}: folder")
    return out


def run(args: argparse.Namespace) -> Path:
    """Read, convert and write atomically; refuses to overwrite unless ``--force``, and never the input."""
    out = check_paths(args)
    checkpoint = load_checkpoint(args.input)  # read once: the step, the weights and their record
    step = checkpoint.get("global_step", 0) if isinstance(checkpoint, dict) else 0
    state_dict, record = read_checkpoint(args.input, strict=not args.ignore_checkpoint_record, checkpoint=checkpoint)
    hparams = (record or {}).get("hparams")  # what the weights mean does not change with the format
    if args.config:
        if args.first_stage_only:
            raise ValueError("--config records a denoiser's hyper-parameters; a --first_stage_only output has none")
        model = load_denoiser(load_config(args.config), args.input, config_source=args.config,
                              strict=not args.ignore_checkpoint_record)
        hparams = model.hparams_record()
    if args.first_stage_only:
        state_dict, hparams = first_stage_only(state_dict), None
    else:
        state_dict = to_native(state_dict, ema_only=args.ema_only, drop_first_stage=args.drop_first_stage)
    if args.half:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    if out.is_symlink() and args.force:
        out.unlink()  # replace the link itself, never the file it points to
    with atomic_path(out) as tmp:  # a kill mid-write leaves the old output (or none), never half of one
        torch.save(native_checkpoint(state_dict, global_step=step, hparams=hparams, source=str(args.input),
                                     ema_only=bool(args.ema_only)), tmp)
    logger.info("wrote %s (%d tensors, %.1f MiB)", out, len(state_dict), out.stat().st_size / 2**20)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    run_command(get_parser, run, argv)
    return 0
