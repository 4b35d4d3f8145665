"""Save a grid of DemoScenes pictures as a PNG and print their labels and captions, to see what the demo
models learn from; or export single pictures to edit.

    python scripts/show_demo_data.py --out demo_grid.png --n 64 --size 32 --scale 4
    python scripts/show_demo_data.py --split validation --export photos -n 4   # photos/validation_0000.png ...

``--export DIR`` writes each picture as its own PNG at ``--size`` pixels (no padding, no upscaling),
named ``<split>_<index>.png``, for ``scripts/inpaint.py --image``.
"""

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from imagebart.cli.common import docstring_epilog, make_outdir, run_cli
from imagebart.data.demo import DemoScenes
from imagebart.images import atomic_path


def make_grid(images: list[np.ndarray], ncol: int, pad: int = 2) -> np.ndarray:
    """(H, W, 3) images in [-1, 1] -> one uint8 grid with white padding."""
    h, w, _ = images[0].shape
    nrow = math.ceil(len(images) / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = np.round((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return grid


def export(examples: list, folder: Path, split: str, start: int) -> None:
    """One PNG per picture, and its label and caption on stdout."""
    for index, example in enumerate(examples, start=start):
        path = folder / f"{split}_{index:04d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(make_grid([example["image"]], 1, pad=0)).save(tmp, format="PNG")
        print(f"wrote {path} ({DemoScenes.class_names[example['class_label']]}: {example['caption']})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=docstring_epilog(__doc__),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_grid.png"), help="PNG to write")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="instead of a grid, write each picture to DIR/<split>_<index>.png")
    parser.add_argument("-n", "--n", type=int, default=64, help="number of pictures")
    parser.add_argument("--size", type=int, default=32, help="picture side in pixels")
    parser.add_argument("--split", default="train", choices=["train", "validation"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first index")
    parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscale")
    args = parser.parse_args()
    if args.n < 1:
        parser.error(f"-n must be >= 1, got {args.n}")

    data = DemoScenes(split=args.split, size=args.size, seed=args.seed,
                      length=max(args.start + args.n, 1))
    examples = [data[i] for i in range(args.start, args.start + args.n)]
    if args.export is not None:
        export(examples, make_outdir(args.export, "--export"), args.split, args.start)
        return
    ncol = math.ceil(math.sqrt(args.n))
    grid = Image.fromarray(make_grid([e["image"] for e in examples], ncol))
    if args.scale > 1:
        grid = grid.resize((grid.width * args.scale, grid.height * args.scale), Image.NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    labels = [DemoScenes.class_names[e["class_label"]] for e in examples]
    print(f"wrote {args.out} ({args.n} pictures, {args.size}px); labels row by row:")
    for r in range(0, len(labels), ncol):
        print("  " + " ".join(f"{l:8s}" for l in labels[r:r + ncol]))
    print("captions, row by row:")
    for i, example in enumerate(examples):
        print(f"  {i // ncol},{i % ncol}: {example['caption']}")


if __name__ == "__main__":
    run_cli("scripts/show_demo_data.py", main)
