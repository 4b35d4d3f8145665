"""``scripts/evaluate.py``: FID / KID / IS / precision-recall of generated images against a reference."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from imagebart.cli.common import HelpFormatter, resolve_device, run_command
from imagebart.evaluation.demo_features import load_demo_features
from imagebart.evaluation.image_sets import SET_FORMS, extract, set_labels
from imagebart.evaluation.inception import WEIGHTS_ENV, WEIGHTS_NAME, load_inception
from imagebart.evaluation.metrics import ReferenceStats, all_metrics

logger = logging.getLogger(__name__)

FEATURES = ("demo", "inception")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/evaluate.py", formatter_class=HelpFormatter,
        description="Sample quality of --samples against --reference: FID, KID, precision/recall, and an "
                    "Inception-Score-like number from the feature network's classifier.",
        epilog="examples:\n  python scripts/evaluate.py --samples samples/ --reference demo:validation\n"
               "  python scripts/evaluate.py --samples samples.npz --reference demo_val_stats.npz --out m.json\n"
               f"sets: {SET_FORMS}; --reference may also be a statistics .npz written by --save_reference_stats")
    parser.add_argument("--samples", required=True, help="the generated images")
    parser.add_argument("--reference", required=True, help="the reference images or their statistics .npz")
    parser.add_argument("--features", default="demo", choices=FEATURES,
                        help="feature network: demo (shipped, for the demo data) or inception")
    parser.add_argument("--feature_weights", default=None,
                        help="weights of the feature network (demo: default models/demo/features.ckpt)")
    parser.add_argument("--inception_weights", default=None,
                        help=f"--features inception: the local {WEIGHTS_NAME} (None: ${WEIGHTS_ENV}, else torch "
                             "hub's checkpoints folder)")
    parser.add_argument("--n", type=int, default=None, help="use the first N images of each set")
    parser.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    parser.add_argument("--save_reference_stats", default=None, help="write the reference statistics here for reuse")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--device", default=None, help="torch device (None: cuda if available, else cpu)")
    return parser


def feature_network(args):
    """The demo CNN, or the FID Inception with weights from a local file (nothing is downloaded)."""
    if args.features == "inception":
        return load_inception(args.inception_weights)
    return load_demo_features(args.feature_weights)


def run(args) -> dict:
    if args.n is not None and args.n < 2:
        raise ValueError(f"--n must be >= 2 (FID needs two images per set), got {args.n}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    network = feature_network(args).to(device)
    if Path(args.reference).suffix == ".npz" and _is_stats(args.reference):
        reference = ReferenceStats.load(args.reference)
        if reference.feature_name != args.features:
            raise ValueError(f"{args.reference} holds {reference.feature_name} statistics, not {args.features}")
    else:
        features, _ = extract(network, args.reference, args.n, args.batch_size, device)
        reference = ReferenceStats.from_features(features, feature_name=args.features)
    if args.save_reference_stats:
        logger.info("wrote reference statistics %s", reference.save(args.save_reference_stats))
    features, logits = extract(network, args.samples, args.n, args.batch_size, device)
    metrics = all_metrics(reference, features, logits)
    labels = set_labels(args.samples, args.n)
    if labels is not None and len(labels) == len(logits) and labels.max() < logits.shape[1]:
        # conditional samples: how often the classifier sees the class they were drawn for
        metrics["class_accuracy"] = float((logits.argmax(1).numpy() == labels).mean())
    metrics.update(samples=str(args.samples), reference=str(args.reference))
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return metrics


def _is_stats(path: str) -> bool:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return "mu" in data
    except (OSError, ValueError):
        return False


def table(metrics: dict) -> str:
    rows = [("FID", metrics["fid"]), ("KID (x1000)", 1000 * metrics["kid_mean"]),
            ("KID std (x1000)", 1000 * metrics["kid_std"]), ("precision", metrics["precision"]),
            ("recall", metrics["recall"])]
    if "inception_score" in metrics:
        rows.append(("IS-like (classifier)", metrics["inception_score"]))
    if "class_accuracy" in metrics:
        rows.append(("class accuracy", metrics["class_accuracy"]))
    lines = [f"{metrics['n_samples']} samples vs {metrics['n_reference']} reference, {metrics['features']} features"]
    lines += [f"  {name:<22}{value:10.4f}" for name, value in rows]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, metrics = run_command(get_parser, run, argv)
    sys.stdout.write(table(metrics))
    return 0
