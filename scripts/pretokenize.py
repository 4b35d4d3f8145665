"""Encode a training config's datasets once with its frozen first stage, for training on tokens.

    python scripts/pretokenize.py --base configs/demo/scale1.yaml --out data/demo_tokens --flips
    python main.py --base configs/demo/scale1_pretokenized.yaml -t
"""

import sys

from imagebart.cli.pretokenize import main

if __name__ == "__main__":
    sys.exit(main())
