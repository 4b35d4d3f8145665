"""Negative ELBO of a stacked chain, in bits per token and per image dimension.

    python scripts/elbo.py --config configs/sampling/demo.yaml [--max_batches 8]

Each scale is evaluated with its EMA weights on the validation split of scale 1's training
config (or ``--data``, a YAML file with a dataset ``{target, params}``); the terms are summed
as in :mod:`imagebart.metrics`. The table on stdout is the command's result (progress and
problems go to the log on stderr), so it can be piped.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from imagebart.cli.common import (HelpFormatter, add_checkpoint_record_argument, add_threads_argument, apply_threads, check_outdir,
                                  resolve_device, run_command)
from imagebart.config import load_config
from imagebart.images import write_json
from imagebart.metrics import chain_elbo
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.config import load_sampling_config
from imagebart.util import instantiate_from_config


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/elbo.py", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="sampling config listing the chain's checkpoints and configs")
    parser.add_argument("--data", default=None,
                        help="YAML with a dataset {target, params}; None: scale 1's validation data")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_batches", type=int, default=None, help="evaluate on at most this many batches per scale")
    parser.add_argument("--seed", type=int, default=0, help="seed for the forward-process draws")
    parser.add_argument("--device", default=None, help="cpu or cuda (None: cuda when available)")
    add_threads_argument(parser)
    add_checkpoint_record_argument(parser)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser


def check_options(args: argparse.Namespace) -> None:
    """Every option that needs no model, checked before the chain is loaded."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.max_batches is not None and args.max_batches < 1:
        raise ValueError(f"--max_batches must be >= 1 (or left out for the whole split), got {args.max_batches}")
    if args.data is not None and not Path(args.data).is_file():
        raise FileNotFoundError(f"--data {args.data}: no such file; expected a YAML with a dataset "
                                "{target, params}")
    if args.json is not None:
        if Path(args.json).is_dir():
            raise ValueError(f"--json {args.json}: is a folder; expected a file path such as {Path(args.json) / 'elbo.json'}")
        check_outdir(Path(args.json).parent, name=f"--json {args.json}: folder")


def dataset_config(args: argparse.Namespace):
    if args.data is not None:
        config = load_config(args.data)
        if "target" not in config:
            raise ValueError(f"--data {args.data}: has no 'target'; expected a dataset {{target, params}} such as "
                             "{target: imagebart.data.folder.ImageFolder, params: {root: ..., size: 256}}")
        return config
    scale1 = load_sampling_config(args.config).load_scale_config(0)
    try:
        return scale1.data.params.validation
    except Exception as err:  # noqa: BLE001 - any missing key means the same thing here
        raise ValueError(f"scale 1's config has no data.params.validation; pass --data ({err})") from err


def build_dataset(args: argparse.Namespace, resolution: int):
    """The evaluation dataset, checked to be non-empty and to hold images of the chain's size."""
    what = f"--data {args.data}" if args.data is not None else "scale 1's validation data"
    dataset = instantiate_from_config(dataset_config(args))
    if len(dataset) < 1:
        raise ValueError(f"{what}: the dataset is empty")
    image = dataset[0].get("image") if isinstance(dataset[0], dict) else None
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{what}: items must hold an 'image' of shape (H, W, 3), got {shape or type(image).__name__}")
    if shape[:2] != (resolution, resolution):
        raise ValueError(f"{what}: images are {shape[0]}x{shape[1]}, the chain's VQGAN takes "
                         f"{resolution}x{resolution}; set the dataset's size to {resolution}")
    return dataset


def run(args: argparse.Namespace) -> None:
    """Evaluate every scale and write the table (and the JSON figures); a progress bar per scale on stderr."""
    from tqdm import tqdm

    apply_threads(args.threads)
    check_options(args)
    chain = ImageBARTChain.from_sampling_config(args.config, device=resolve_device(args.device),
                                                strict=not args.ignore_checkpoint_record)
    dataset = build_dataset(args, chain.first_stage.encoder.resolution)
    image_size = int(dataset[0]["image"].shape[0])

    def batches_for_scale(t):
        torch.manual_seed(args.seed + t)  # the same forward-process draws on every run
        model = chain.model_for_scale(t)
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
        total = len(loader) if args.max_batches is None else min(len(loader), args.max_batches)
        for batch in tqdm(itertools.islice(loader, args.max_batches), total=total, desc=f"scale {t}/{chain.n_scales}",
                          unit="batch", file=sys.stderr, leave=False):
            yield {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    models = [chain.model_for_scale(t) for t in range(1, chain.n_scales + 1)]
    report = chain_elbo(models, batches_for_scale, image_size)
    sys.stdout.write(report.table() + "\n")
    if args.json:
        figures = {"terms_nats_per_token": report.terms, "prior_nats_per_token": report.prior,
                   "nats_per_token": report.nats_per_token, "bits_per_token": report.bits_per_token,
                   "bits_per_dim": report.bits_per_dim, "examples_per_scale": report.batches}
        write_json(figures, args.json)  # strict JSON: a diverged (NaN) term is an error naming it
        logging.getLogger(__name__).info("wrote %s", args.json)


def main(argv: Optional[Sequence[str]] = None) -> int:
    run_command(get_parser, run, argv)
    return 0
