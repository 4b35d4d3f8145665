"""A chain's VQGAN reconstructions of an image set, as an .npz for scripts/evaluate.py.

    python scripts/reconstruct.py --config configs/sampling/demo.yaml --images demo:validation --out recon.npz
"""

import sys

from imagebart.cli.reconstruct import main

if __name__ == "__main__":
    sys.exit(main())
