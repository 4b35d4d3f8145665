"""``scripts/train_demo_features.py``: train the demo feature network that ``--features demo`` uses."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence

import torch

from imagebart.cli.common import HelpFormatter, run_command
from imagebart.evaluation.demo_features import DEFAULT_WEIGHTS, save_demo_features, train_demo_features


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/train_demo_features.py", formatter_class=HelpFormatter,
                                     description="Train the CNN whose features give the demo FID (a few minutes on "
                                                 "2 CPU cores) and write its weights and validation accuracies.")
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="weights file (the shipped one)")
    parser.add_argument("--n_train", type=int, default=20000, help="training pictures (demo train split)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (None: torch's)")
    return parser


def run(args) -> dict:
    for name in ("n_train", "epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    net, accuracy = train_demo_features(n_train=args.n_train, epochs=args.epochs, seed=args.seed)
    minutes = (time.time() - start) / 60
    save_demo_features(net, args.out, validation_accuracy=accuracy, n_train=args.n_train, epochs=args.epochs,
                       seed=args.seed, train_minutes=round(minutes, 1))
    return {"out": args.out, "validation_accuracy": accuracy, "train_minutes": round(minutes, 1)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, summary = run_command(get_parser, run, argv)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0
