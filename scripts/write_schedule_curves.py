"""Write the packaged quality-curve tables (``imagebart/diffusion/curves/<dset>.json``).

The metric-equalised schedules (``redraw_prob: bernoulli_PSIM`` etc.) are derived from curves
measured for the original release: FID, IS, PSNR, PSIM and SSIM of decoded tokens as a function
of ᾱ, for ImageNet (``in``) and FFHQ (``ffhq``). The original shipped them as pickles; this
script takes their numbers from a JSON dump of those pickles and writes one plain table per
dataset in the format that :mod:`imagebart.diffusion.curves` reads (see there).

    python scripts/write_schedule_curves.py [--source ../shared/reference/schedule_curves.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imagebart.cli.common import HelpFormatter, configure_logging, run_cli

logger = logging.getLogger("imagebart.write_schedule_curves")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "reference" / "schedule_curves.json"
DEFAULT_OUT = REPO_ROOT / "imagebart" / "diffusion" / "curves"

# pickle name in the source dump -> dataset name used in ``<dset>_bernoulli_<METRIC>``
DATASETS = {"in_schedule_vs_metric.p": "in", "ffhq_schedule_vs_metric.p": "ffhq"}
# only the token-redraw ("bernoulli") corruption is a multinomial diffusion; the pickles also
# hold curves for Gaussian corruption of the latents, which no schedule here uses
DIST = "bernoulli"


def curve_table(measured: dict, name: str) -> dict:
    """One dataset's table: ᾱ and the mean of every metric (the pickles store [mean, std])."""
    table = {
        "description": (
            f"Quality of decoded tokens after redrawing each token with probability 1 - alphacum "
            f"({name}); metric means at each alphacum, from the original release's "
            f"data/{name}_schedule_vs_metric.p (key '{DIST}'). Read by "
            "imagebart.diffusion.curves; used by redraw_prob '[dset_]bernoulli_<METRIC>'."
        ),
        "alphacum": [float(a) for a in measured["alphacum"]],
    }
    for metric, rows in measured.items():
        if metric == "alphacum":
            continue
        table[metric] = [float(row[0]) for row in rows]
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="schedule_curves.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for <dset>.json")
    args = parser.parse_args(argv)

    files = json.loads(args.source.read_text())["files"]
    args.out.mkdir(parents=True, exist_ok=True)
    for pickle_name, dset in DATASETS.items():
        measured = files[pickle_name]["data"][DIST]
        path = args.out / f"{dset}.json"
        path.write_text(json.dumps(curve_table(measured, dset), indent=1, allow_nan=False) + "\n")
        logger.info("wrote %s", path)


if __name__ == "__main__":
    configure_logging()
    run_cli("scripts/write_schedule_curves.py", main)
