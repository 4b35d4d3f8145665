"""Sample images from a chain of ImageBART scales into a folder (resumable).

    python scripts/sample.py --config configs/sampling/demo.yaml -n 16
    python scripts/sample.py --config configs/sampling/imagenet/imagenet_4_scales_geometric.yaml \
        -n 1000 --batch_size 25 --class_label random --top_k 100,200,300,400 --precision bf16

Writes <outdir>/samples/*.png, grid.png, tokens.npz and settings.json; see
``imagebart.sampling.batch`` for the layout and the resume rule, ``imagebart.cli.sample`` for the options.
"""

import sys

from imagebart.cli.sample import main

if __name__ == "__main__":
    sys.exit(main())
