"""``scripts/reconstruct.py``: what a chain makes of an image set, as an ADM-suite ``.npz``.

Without ``--mask``: the VQGAN's reconstructions. The first stage bounds what any chain on it can
reach, so evaluating them against the originals gives the ceiling a sample FID is read against.
With ``--mask`` (e.g. ``upper_half``): the chain's completions of the masked-out region, the
paper's completion FID, with the original pixels pasted back where the mask keeps them (feathered
seam) unless ``--no_paste_back``. With ``--from_t t``: each image's x_0 is corrupted to x_t by the
forward process and the chain's scales t..1 denoise it, which shows how much each scale keeps.
Labelled sets (the demo splits, dataset configs) also get their labels under ``arr_1``, so
``scripts/evaluate.py`` reports the classifier accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from imagebart.cli.common import HelpFormatter, add_checkpoint_record_argument, per_scale_option, resolve_device, run_command
from imagebart.evaluation.image_sets import SET_FORMS, dataset_labels, image_batches
from imagebart.images import atomic_path, to_uint8
from imagebart.sampling.editing import denoise_from, edit, paste_back
from imagebart.sampling.masks import parse_mask


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/reconstruct.py", formatter_class=HelpFormatter,
                                     description="Encode and decode an image set with a chain's VQGAN; write uint8 "
                                                 "images (N, H, W, 3) under arr_0 of an .npz.")
    parser.add_argument("--config", required=True, help="sampling config whose first stage to use")
    parser.add_argument("--images", required=True, help=f"the image set: {SET_FORMS}")
    parser.add_argument("--out", required=True, help="the .npz to write")
    parser.add_argument("--n", type=int, default=None, help="the first N images (None: all)")
    parser.add_argument("--mask", default=None, help="complete instead of reconstruct: a mask preset or file "
                                                     "(white = keep), as scripts/inpaint.py takes")
    parser.add_argument("--no_paste_back", action="store_true", help="with --mask: keep the raw decode everywhere")
    parser.add_argument("--from_t", type=int, default=None,
                        help="denoise instead of reconstruct: x_0 -> x_t by q, then the chain's scales t..1")
    parser.add_argument("--chain_length", default="1", help="with --mask: passes per scale (one or one per scale)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--device", default=None)
    add_checkpoint_record_argument(parser)
    return parser


@torch.no_grad()
def run(args) -> Path:
    from imagebart.sampling.chain import ImageBARTChain

    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if Path(args.out).suffix != ".npz":
        raise ValueError(f"--out must name an .npz file, got {args.out}")
    if args.from_t is not None and args.mask is not None:
        raise ValueError("--from_t and --mask are two different runs: give one of them")
    chain = ImageBARTChain.from_sampling_config(args.config, device=resolve_device(args.device),
                                                strict=not args.ignore_checkpoint_record)
    torch.manual_seed(args.seed)  # remapped codes outside the used list are drawn at random
    size = chain.image_size
    mask = parse_mask(args.mask, (size, size)) if args.mask is not None else None  # (H, W), 1 = keep
    chain_length = per_scale_option(args.chain_length, "--chain_length", integer=True)
    generator = chain.make_generator(args.seed)
    decoded = []
    for images in image_batches(args.images, args.n, args.batch_size):
        if args.from_t is not None:
            out = denoise_from(chain, images, args.from_t, generator=generator)
        elif mask is None:
            out = chain.decode(chain.encode(images))
        else:
            out = edit(chain, images, mask, chain_length=chain_length, generator=generator).images
            if not args.no_paste_back:
                out = paste_back(images.to(out.device), out, mask)
        decoded.extend(to_uint8(image) for image in out.float().cpu())  # (B, 3, H, W) -> (H, W, 3) uint8
    arrays = {"arr_0": np.stack(decoded)}
    labels = dataset_labels(args.images, len(decoded))
    if labels is not None:
        arrays["arr_1"] = labels
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return Path(args.out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, out = run_command(get_parser, run, argv)
    sys.stdout.write(f"wrote {out}\n")
    return 0
