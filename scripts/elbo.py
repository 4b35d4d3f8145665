"""Negative ELBO of a stacked chain, in bits per token and per image dimension.

    python scripts/elbo.py --config configs/sampling/demo.yaml [--max_batches 8]
    python scripts/elbo.py --config configs/sampling/demo.yaml --data my_data.yaml --json elbo.json

Options: ``python scripts/elbo.py --help`` (``imagebart.cli.elbo``).
"""

import sys

from imagebart.cli.elbo import main

if __name__ == "__main__":
    sys.exit(main())
