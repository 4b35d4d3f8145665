"""How often a text-conditional demo chain draws what its caption asks, per guidance scale.

    python scripts/caption_table.py --config configs/sampling/demo_text.yaml --out docs/caption_agreement.json
"""

import sys

from imagebart.cli.caption_table import main

if __name__ == "__main__":
    sys.exit(main())
