"""Sample quality: FID, KID, precision/recall and an IS-like score against a reference set.

    python scripts/evaluate.py --samples samples/ --reference demo:validation --out metrics.json
    python scripts/evaluate.py --samples samples/ --reference demo:validation --save_reference_stats demo_val.npz
    python scripts/evaluate.py --samples other/ --reference demo_val.npz
"""

import sys

from imagebart.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
