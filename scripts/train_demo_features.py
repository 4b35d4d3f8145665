"""Train the demo feature network (models/demo/features.ckpt) behind ``scripts/evaluate.py --features demo``.

    python scripts/train_demo_features.py
"""

import sys

from imagebart.cli.train_demo_features import main

if __name__ == "__main__":
    sys.exit(main())
