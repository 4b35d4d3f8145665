"""``scripts/caption_table.py``: how often a text-conditional demo chain draws what its caption asks.

The captions are those of the demo validation pictures, so the scene behind each one is known:
the kind and colour of its large shape. Each sample is read back by the demo feature network's
kind and colour heads (100% right on real validation pictures) and counted as agreeing when both
match. Per guidance scale the table gives kind, colour and joint agreement, and the demo FID
(against ``demo:validation``) of the same samples.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional, Sequence

import torch

from imagebart.cli.common import (HelpFormatter, add_table_arguments, docstring_epilog, parse_scale_values, resolve_device,
                                  run_command, write_table)

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/caption_table.py", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter,
                                     epilog=docstring_epilog(__doc__))
    parser.add_argument("--config", default="configs/sampling/demo_text.yaml", help="text-conditional sampling config")
    parser.add_argument("-n", "--n_samples", type=int, default=200, help="captions (validation pictures 0..n-1)")
    add_table_arguments(parser, "1,2,3")
    return parser


def validation_targets(n: int):
    """The first n validation captions and their large shape's kind and colour."""
    from imagebart.data.demo import DemoScenes

    data = DemoScenes(split="validation", length=n)
    captions, kinds, colours = [], [], []
    for index in range(n):
        _, shapes, _ = data.draw_scene(data.rng(index))
        captions.append(data[index]["caption"])
        kinds.append(shapes[0].kind)
        colours.append(shapes[0].colour)
    return captions, torch.tensor(kinds), torch.tensor(colours)


@torch.no_grad()
def agreement(network, images: torch.Tensor, kinds: torch.Tensor, colours: torch.Tensor) -> dict:
    """Fractions of images whose large shape the feature network reads as the asked kind / colour / both."""
    out = network(images)
    kind_ok = out["kind"].argmax(1).cpu() == kinds
    colour_ok = out["colour"].argmax(1).cpu() == colours
    return {"kind_agreement": float(kind_ok.float().mean()), "colour_agreement": float(colour_ok.float().mean()),
            "joint_agreement": float((kind_ok & colour_ok).float().mean())}


def run(args) -> list:
    from imagebart.evaluation.demo_features import load_demo_features
    from imagebart.evaluation.image_sets import extract
    from imagebart.evaluation.metrics import ReferenceStats, all_metrics
    from imagebart.sampling.batch import batch_seed
    from imagebart.sampling.chain import ImageBARTChain

    if args.n_samples < 2 or args.batch_size < 1:
        raise ValueError(f"-n must be >= 2 and --batch_size >= 1, got {args.n_samples} and {args.batch_size}")
    scales = parse_scale_values(args.guidance_scales, "--guidance_scales")
    device = resolve_device(args.device)
    chain = ImageBARTChain.from_sampling_config(args.config, device=device)
    if not chain.is_text_conditional:
        raise ValueError(f"--config {args.config}: the chain is not text-conditional")
    network = load_demo_features().to(device)
    reference = ReferenceStats.from_features(extract(network, "demo:validation", None, 100, device)[0], "demo")
    captions, kinds, colours = validation_targets(args.n_samples)
    rows = []
    for scale in scales:
        start, images = time.time(), []
        for k, first in enumerate(range(0, args.n_samples, args.batch_size)):
            part = captions[first:first + args.batch_size]
            result = chain.sample(len(part), caption=part, guidance_scale=scale,
                                  generator=chain.make_generator(batch_seed(args.seed, k)))
            images.append(result.images)
        images = torch.cat(images)
        features = torch.cat([network(images[i:i + 100])["features"].double().cpu()
                              for i in range(0, len(images), 100)])
        row = {"guidance_scale": scale, "seconds": round(time.time() - start, 1),
               **agreement(network, images, kinds, colours), **all_metrics(reference, features)}
        logger.info("guidance %g: kind %.3f, colour %.3f, both %.3f, FID %.2f", scale, row["kind_agreement"],
                    row["colour_agreement"], row["joint_agreement"], row["fid"])
        rows.append(row)
    if args.out:
        write_table(args.out, args, rows, markdown(rows))
    return rows


def markdown(rows: list) -> str:
    lines = ["| guidance scale | kind agrees | colour agrees | both agree | FID | precision | recall |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['guidance_scale']:g} | {r['kind_agreement']:.3f} | {r['colour_agreement']:.3f} | "
              f"{r['joint_agreement']:.3f} | {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, rows = run_command(get_parser, run, argv)
    sys.stdout.write(markdown(rows))
    return 0
