"""Plot a training run's loss and bits-per-token curves to one PNG.

    python scripts/plot_metrics.py logs/<run>        # writes logs/<run>/metrics.png
"""

import sys

from imagebart.cli.plot_metrics import main

if __name__ == "__main__":
    sys.exit(main())
