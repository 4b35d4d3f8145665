"""Edit images with a trained ImageBART chain: inpainting, half completion, outpainting.

    python scripts/inpaint.py --config configs/sampling/ffhq/ffhq_4_scales_geometric.yaml \\
        --image photo.png --mask upper_half -n 4 --chain_length 3 --outdir outputs/inpaint

``--mask``: ``upper_half`` (keep the upper half), ``lower_half``, ``centre[:size]`` (generate a
centred window), ``outpaint[:size]`` (keep a centred window, generate the border), ``keep_all``,
``edit_all``, or a mask image (white = keep, black or transparent = edit; any size, cropped and
resized like the images). ``size`` is a fraction of the side (0.5) or pixels (64).
Schedules (``--top_k``, ``--temperature``, ``--chain_length``) take one value or one per scale,
comma-separated, in sampling order (scale T first).

Writes, per input image, ``<outdir>/<name>/``: ``original.png`` (the image as the chain sees it),
``masked.png`` (edited region greyed), ``sample_000.png``..., ``grid.png`` (original | masked |
samples), and ``settings.json`` next to them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from imagebart.cli.common import parse_class_label, per_scale_option, resolve_device, run_command
from imagebart.data.base import load_image, preprocess_image
from imagebart.images import IMAGE_SUFFIXES, save_grid, save_image
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.editing import edit
from imagebart.sampling.masks import grey_out, parse_mask

logger = logging.getLogger(__name__)


# argument parsing


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/inpaint.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="sampling config (checkpoints: / configs:, scale 1 first)")
    parser.add_argument("--image", required=True, type=Path, help="an image file or a folder of images")
    parser.add_argument("--mask", default="upper_half", help="preset spec or mask image file (default: upper_half)")
    parser.add_argument("-n", "--n_samples", type=int, default=4, help="samples per image")
    parser.add_argument("--batch_size", type=int, default=None, help="samples per forward pass (default: n)")
    parser.add_argument("--top_k", default=None,
                        help="top-k, one value or one per scale (default: each config's top_k)")
    parser.add_argument("--temperature", default="1.0",
                        help="temperature, one value or one per scale")
    parser.add_argument("--chain_length", default="1",
                        help="passes per scale, one value or one per scale (re-noising between passes)")
    parser.add_argument("--class_label", default=None,
                        help="target class for class-conditional chains (an int or 'random')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outdir", type=Path, default=Path("outputs/inpaint"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--no_ema", action="store_true", help="sample with the raw weights instead of EMA")
    return parser


def list_images(path: Path) -> list:
    """One file, or the image files of a folder (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--image {path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--image {path}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def image_tensor(path: Path, size: int) -> torch.Tensor:
    """(1, 3, size, size) in [-1, 1]: centre crop and resize as the datasets do."""
    array = preprocess_image(load_image(path), size)  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1)[None]


# the run


def run(args: argparse.Namespace) -> list:
    """Edit every image; return the output folders."""
    if args.n_samples < 1:
        raise ValueError(f"-n must be >= 1, got {args.n_samples}")
    batch_size = args.batch_size or args.n_samples
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    top_k = per_scale_option(args.top_k, "--top_k", integer=True)
    temperature = per_scale_option(args.temperature, "--temperature")
    chain_length = per_scale_option(args.chain_length, "--chain_length", integer=True)
    class_label = parse_class_label(args.class_label)
    paths = list_images(args.image)
    chain = ImageBARTChain.from_sampling_config(args.config, device=resolve_device(args.device),
                                                ema=not args.no_ema)
    size = chain.first_stage.encoder.resolution
    mask = parse_mask(args.mask, (size, size))  # (H, W), 1 = keep
    torch.manual_seed(args.seed)  # the first stage draws unknown remapped codes from the global RNG
    generator = chain.make_generator(args.seed)
    logger.info("%d image(s), %dx%d, mask %s keeps %.0f%% of the pixels", len(paths), size, size, args.mask,
                100 * float(mask.mean()))

    outdirs = []
    for path in paths:
        outdir = args.outdir / path.stem
        original = image_tensor(path, size)  # (1, 3, H, W)
        samples = []
        start = time.time()
        for first in range(0, args.n_samples, batch_size):
            b = min(batch_size, args.n_samples - first)
            result = edit(chain, original.expand(b, -1, -1, -1), mask, top_k=top_k, temperature=temperature,
                          chain_length=chain_length, class_label=class_label, generator=generator)
            samples.append(result.images.cpu())
        samples = torch.cat(samples)  # (n, 3, H, W)
        logger.info("%s: %d samples in %.1f s", path.name, args.n_samples, time.time() - start)

        masked = grey_out(original, mask)  # (1, 3, H, W)
        save_image(original[0], outdir / "original.png")
        save_image(masked[0], outdir / "masked.png")
        for i, sample in enumerate(samples):
            save_image(sample, outdir / f"sample_{i:03d}.png")
        row = torch.cat((original, masked, samples))  # (n+2, 3, H, W)
        save_grid(row, outdir / "grid.png", nrow=row.shape[0])
        settings = {"image": str(path), "mask": args.mask, "n_samples": args.n_samples, "top_k": top_k,
                    "temperature": temperature, "chain_length": chain_length, "class_label": class_label,
                    "seed": args.seed, "config": str(args.config), "chain": chain.describe()}
        (outdir / "settings.json").write_text(json.dumps(settings, indent=2))
        outdirs.append(outdir)
    return outdirs


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, outdirs = run_command(get_parser, run, argv)
    logger.info("wrote %s", ", ".join(str(d) for d in outdirs))
    return 0
