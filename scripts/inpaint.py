"""Edit images with a trained ImageBART chain: inpainting, half completion, outpainting.

    python scripts/inpaint.py --config configs/sampling/ffhq/ffhq_4_scales_geometric.yaml \
        --image photo.png --mask upper_half -n 4 --chain_length 3 --outdir outputs/inpaint
    python scripts/inpaint.py --config configs/sampling/demo.yaml --image photos/ --mask centre:0.5

Masks, schedules and the files written: ``python scripts/inpaint.py --help`` (``imagebart.cli.inpaint``).
"""

import sys

from imagebart.cli.inpaint import main

if __name__ == "__main__":
    sys.exit(main())
