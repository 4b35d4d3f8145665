"""``scripts/plot_metrics.py``: a training run's loss and bits-per-token curves as one PNG.

    python scripts/plot_metrics.py logs/<run>                  # writes logs/<run>/metrics.png
    python scripts/plot_metrics.py logs/<run> --out curves.png --smooth 10

Reads ``<run>/csv/metrics.csv``, which every run writes (TensorBoard, when installed, gets the
same values). Left: the loss (train per step, smoothed with a running mean, and the validation
loss with the network's weights and with its EMA weights); right: the same in bits per token.
A VQGAN run shows its reconstruction loss. Prints the last value of each curve.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

from imagebart.cli.common import HelpFormatter, docstring_epilog, run_command
from imagebart.images import atomic_path

# (panel title, candidate columns): the columns a run has are drawn, in this order
PANELS = (
    ("loss", ("train/loss", "val/loss", "val_ema/loss", "train/rec_loss", "val/rec_loss")),
    ("bits per token", ("train/bits_per_token", "val/loss_bits", "val_ema/loss_bits")),
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/plot_metrics.py", description=__doc__.splitlines()[0],
                                     epilog=docstring_epilog(__doc__),
                                     formatter_class=HelpFormatter)
    parser.add_argument("run", help="a run directory (logs/<run>) or its metrics.csv")
    parser.add_argument("--out", default=None, help="the PNG to write (None: <run>/metrics.png)")
    parser.add_argument("--smooth", type=int, default=5,
                        help="running mean over this many logged train values (Lightning logs every 50 steps)")
    return parser


def metrics_file(run: Path) -> Path:
    """``run/csv/metrics.csv`` (or ``run`` itself when it is a CSV file), with an error that says what is missing."""
    if run.is_file():
        return run
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run directory; pass logs/<run> as main.py wrote it")
    path = run / "csv" / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run} is not a training run's directory, or it has "
                                "not logged yet (rows are written every 50 steps and at each validation)")
    return path


def read_curves(path: Path) -> dict:
    """Every numeric column as (steps, values), empty cells skipped."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise ValueError(f"{path}: expected a Lightning metrics.csv with a 'step' column, got columns "
                             f"{reader.fieldnames}")
        curves: dict = {}
        for row in reader:
            for key, value in row.items():
                if key == "step" or value in ("", None) or not row.get("step"):
                    continue
                try:
                    number = float(value)
                except ValueError:
                    continue
                if math.isfinite(number):
                    steps, values = curves.setdefault(key, ([], []))
                    steps.append(int(float(row["step"])))
                    values.append(number)
    return curves


def running_mean(values: list, window: int) -> list:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot(curves: dict, out: Path, smooth: int, title: str, source: Path) -> list:
    """Draw the panels; returns the columns drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, [c for c in columns if c in curves]) for name, columns in PANELS]
    panels = [(name, columns) for name, columns in panels if columns]
    if not panels:
        raise ValueError(f"{source}: no loss columns to plot: it holds {sorted(curves)}; expected one of "
                         f"{[c for _, columns in PANELS for c in columns]}")
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for axis, (name, columns) in zip(axes[0], panels):
        for column in columns:
            steps, values = curves[column]
            if column.startswith("train/") and len(values) > 1:
                line, = axis.plot(steps, values, alpha=0.25, linewidth=0.8)
                axis.plot(steps, running_mean(values, smooth), color=line.get_color(),
                          label=f"{column} (mean of {smooth})")
            else:
                axis.plot(steps, values, marker="o", markersize=3, label=column)
        axis.set_xlabel("step")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return [column for _, columns in panels for column in columns]


def run(args) -> Path:
    if args.smooth < 1:
        raise ValueError(f"--smooth must be >= 1, got {args.smooth}")
    run_dir = Path(args.run)
    path = metrics_file(run_dir)
    curves = read_curves(path)
    out = Path(args.out) if args.out else (run_dir if run_dir.is_dir() else path.parent) / "metrics.png"
    drawn = plot(curves, out, args.smooth, str(run_dir), path)
    for column in drawn:
        steps, values = curves[column]
        sys.stdout.write(f"{column}: {values[-1]:.4f} at step {steps[-1]}\n")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, out = run_command(get_parser, run, argv)
    sys.stdout.write(f"wrote {out}\n")
    return 0
