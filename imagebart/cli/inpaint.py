"""Edit images with a trained ImageBART chain: inpainting, half completion, outpainting.

    python scripts/inpaint.py --config configs/sampling/ffhq/ffhq_4_scales_geometric.yaml \\
        --image photo.png --mask upper_half -n 4 --chain_length 3 --outdir outputs/inpaint

``--mask``: ``upper_half`` (keep the upper half), ``lower_half``, ``centre[:size]`` (generate a
centred window), ``outpaint[:size]`` (keep a centred window, generate the border), ``keep_all``,
``edit_all``, or a mask image (white = keep, black or transparent = edit; any size, cropped and
resized like the images). ``size`` is a fraction of the side (0.5) or pixels (64).
Schedules (``--top_k``, ``--temperature``, ``--chain_length``, ``--guidance_scale``) take one value or one per scale,
comma-separated, in sampling order (scale T first).

A mask that keeps every token of the latent grid is refused: there would be nothing to edit.

Writes, per input image, ``<outdir>/<file name>/`` (``photo.png/`` and ``photo.jpg/`` are two
folders; the suffix stays in the name so that no two inputs ever share one): ``original.png``
(the image as the chain sees it), ``masked.png`` (edited region greyed), ``sample_000.png``...,
``grid.png`` (original | masked | samples), and ``settings.json`` next to them.

Re-running the same command resumes: an image folder whose settings.json matches keeps its
intact samples and samples only the batches with missing or damaged PNGs (batch b of every image
is seeded from (seed, b), so the result equals an uninterrupted run). Other settings (-n, --seed,
--mask, schedules, another picture under the same name, ...) are refused, naming what differs:
choose a new --outdir, or delete that folder's settings.json to overwrite it. One run at a time
writes to an --outdir (a lock file, ``<outdir>/.lock``, names the run that holds it).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from imagebart.cli.common import (
    HelpFormatter,
    add_checkpoint_record_argument,
    add_decoding_arguments,
    add_guidance_argument,
    add_threads_argument,
    apply_decoding_options,
    apply_threads,
    check_outdir,
    docstring_epilog,
    parse_class_label,
    parse_gamma,
    parse_guidance_scale,
    per_scale_option,
    resolve_device,
    run_command,
)
from imagebart.data.base import load_image, open_image, preprocess_image
from imagebart.images import IMAGE_SUFFIXES, image_is_intact, save_grid, save_image
from imagebart.sampling.batch import batch_seed, check_or_write_settings, versions
from imagebart.sampling.outdir_lock import OutdirLock
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.editing import edit, paste_back
from imagebart.sampling.masks import grey_out, parse_mask, token_keep_mask

logger = logging.getLogger(__name__)


# argument parsing


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/inpaint.py", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter,
                                     epilog=docstring_epilog(__doc__))
    parser.add_argument("--config", required=True, help="sampling config (checkpoints: / configs:, scale 1 first)")
    parser.add_argument("--image", required=True, type=Path, help="an image file or a folder of images")
    parser.add_argument("--mask", default="upper_half", help="preset spec or mask image file")
    parser.add_argument("-n", "--n_samples", type=int, default=4, help="samples per image")
    parser.add_argument("--batch_size", type=int, default=None, help="samples per forward pass (None: n)")
    parser.add_argument("--top_k", default=None,
                        help="top-k, one value or one per scale (None: each config's top_k)")
    parser.add_argument("--temperature", default="1.0",
                        help="temperature, one value or one per scale")
    parser.add_argument("--chain_length", default="1",
                        help="passes per scale, one value or one per scale (re-noising between passes)")
    parser.add_argument("--class_label", default=None,
                        help="target class for class-conditional chains (an int or 'random')")
    parser.add_argument("--caption", default=None,
                        help="text-conditional chains: the new caption the whole image should match (text-guided "
                             "local modification)")
    add_guidance_argument(parser)
    add_decoding_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outdir", type=Path, default=Path("outputs/inpaint"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (None: cuda if available)")
    add_threads_argument(parser)
    parser.add_argument("--no_paste_back", action="store_true",
                        help="keep the raw decode everywhere (without it: paste the original pixels back where the mask "
                             "keeps them, with a feathered seam)")
    parser.add_argument("--no_ema", action="store_true", help="sample with the raw weights instead of EMA")
    add_checkpoint_record_argument(parser)
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


def output_folder(outdir: Path, image: Path) -> Path:
    """``<outdir>/<file name>``: the suffix stays, so ``photo.png`` and ``photo.jpg`` never share a folder."""
    return outdir / image.name


def check_mask_edits(mask: torch.Tensor, spec: str, latent_shape) -> None:
    """Refuse a mask that keeps every token: the samples would all be the original."""
    keep = token_keep_mask(mask, 1, latent_shape)  # (1, L) bool
    if bool(keep.all()):
        raise ValueError(f"--mask {spec}: keeps every token of the {latent_shape[0]}x{latent_shape[1]} latent grid, "
                         "so there is nothing to edit; mark a larger region black (edit) or choose another preset")


def image_settings(args, path: Path, batch_size: int, chain, top_k, temperature, chain_length,
                   class_label, device, guidance_scale=1.0, gamma=None) -> dict:
    """Everything that determines one image's samples (checked on resume)."""
    return {"image": path.name, "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "mask": args.mask, "mask_sha256": (hashlib.sha256(Path(args.mask).read_bytes()).hexdigest()
                                               if Path(args.mask).is_file() else None),
            "n_samples": args.n_samples, "batch_size": batch_size, "top_k": chain.top_k_schedule(top_k),
            "temperature": chain.temperature_schedule(temperature), "chain_length": chain_length,
            "guidance_scale": chain.guidance_schedule(guidance_scale), "gamma": chain.gamma_schedule(gamma),
            **({"caption": args.caption} if args.caption is not None else {}),
            "class_label": class_label, "seed": args.seed, "batch_seeds": "numpy SeedSequence([seed, batch]) per image",
            "paste_back": not args.no_paste_back,
            "config": str(args.config), "ema": not args.no_ema, "device": device.type, "chain": chain.describe(),
            "versions": versions()}


def run(args: argparse.Namespace) -> list:
    """Check everything, then edit every image under the outdir's lock; return the output folders."""
    if args.n_samples < 1:
        raise ValueError(f"-n must be >= 1, got {args.n_samples}")
    batch_size = args.n_samples if args.batch_size is None else args.batch_size
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    top_k = per_scale_option(args.top_k, "--top_k", integer=True)
    temperature = per_scale_option(args.temperature, "--temperature")
    if temperature is None:
        raise ValueError("--temperature needs a number (or one per scale)")
    chain_length = per_scale_option(args.chain_length, "--chain_length", integer=True)
    class_label = parse_class_label(args.class_label)
    guidance_scale = parse_guidance_scale(args.guidance_scale)
    gamma = parse_gamma(args)
    device = resolve_device(args.device)
    apply_threads(args.threads)
    check_outdir(args.outdir)
    paths = list_images(args.image)
    if Path(args.mask).is_file():
        open_image(args.mask, "--mask file")  # unreadable files and decompression bombs, named
    chain = ImageBARTChain.from_sampling_config(args.config, device=device, ema=not args.no_ema,
                                                strict=not args.ignore_checkpoint_record)
    apply_decoding_options(chain, args)
    if args.caption is None and chain.is_text_conditional:
        raise ValueError('the chain is text-conditional: pass --caption "..." (what the edited image should show)')
    chain.caption_tokens(args.caption, 1)  # a caption for another kind of chain is refused here
    size = chain.first_stage.encoder.resolution
    try:
        mask = parse_mask(args.mask, (size, size))  # (H, W), 1 = keep
    except (ValueError, TypeError) as err:
        raise ValueError(f"--mask {args.mask}: {err}") from None
    check_mask_edits(mask, args.mask, chain.latent_shape)
    for path in paths:
        image_tensor(path, size)  # every picture checked before any work (kept in memory one at a time)
    plans = [(path, output_folder(args.outdir, path),
              image_settings(args, path, batch_size, chain, top_k, temperature, chain_length, class_label, device,
                             guidance_scale, gamma))
             for path in paths]
    logger.info("%d image(s), %dx%d, mask %s keeps %.0f%% of the pixels", len(paths), size, size, args.mask,
                100 * float(mask.mean()))
    with OutdirLock(args.outdir):
        for _, folder, settings in plans:  # refuse other settings before sampling anything
            if (folder / "settings.json").is_file():
                check_or_write_settings(folder, settings)
        for path, folder, settings in plans:
            edit_one(chain, image_tensor(path, size), mask, folder, settings, args.n_samples, batch_size,
                     dict(top_k=top_k, temperature=temperature, chain_length=chain_length, class_label=class_label,
                          guidance_scale=guidance_scale, caption=args.caption, gamma=gamma))
    return [folder for _, folder, _ in plans]


def edit_one(chain, original: torch.Tensor, mask: torch.Tensor, folder: Path, settings: dict, n: int,
             batch_size: int, options: dict) -> None:
    """One image's samples, resuming: only batches with a missing or damaged PNG are sampled."""
    resumed = check_or_write_settings(folder, settings)
    samples = [folder / f"sample_{i:03d}.png" for i in range(n)]
    start, sampled = time.time(), 0
    for index, first in enumerate(range(0, n, batch_size)):
        paths = samples[first:first + batch_size]
        redo = [p for p in paths if not (resumed and image_is_intact(p))]
        if not redo:
            continue
        for path in redo:
            if path.exists():
                logger.warning("%s is damaged or from another run; writing it again", path)
        torch.manual_seed(batch_seed(settings["seed"], index))  # the first stage draws unknown remapped codes
        generator = chain.make_generator(batch_seed(settings["seed"], index))
        result = edit(chain, original.expand(len(paths), -1, -1, -1), mask, generator=generator, **options)
        images = result.images.cpu()
        if settings["paste_back"]:  # the user's pixels where the mask keeps them (the decode softens them)
            images = paste_back(original, images, mask)
        for image, path in zip(images, paths):
            if path in redo:  # the batch is redrawn whole (one generator), but intact files stay untouched
                save_image(image, path)
        sampled += len(redo)
    logger.info("%s: %d samples in %.1f s (%d already there)", folder.name, sampled, time.time() - start,
                n - sampled)
    masked = grey_out(original, mask)  # (1, 3, H, W)
    save_image(original[0], folder / "original.png")
    save_image(masked[0], folder / "masked.png")
    written = torch.stack([read_png(p) for p in samples])  # (n, 3, H, W)
    row = torch.cat((original, masked, written))  # (n+2, 3, H, W)
    save_grid(row, folder / "grid.png", nrow=row.shape[0])


def read_png(path: Path) -> torch.Tensor:
    """A written sample back as (3, H, W) in [-1, 1] (the grid shows exactly what is on disk)."""
    array = preprocess_image(load_image(path), None)  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, outdirs = run_command(get_parser, run, argv)
    logger.info("wrote %s", ", ".join(str(d) for d in outdirs))
    return 0
