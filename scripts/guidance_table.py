"""Quality of a class-conditional chain against guidance scale and acceptance rate (demo FID table).

    python scripts/guidance_table.py --config configs/sampling/demo_class.yaml --out docs/class_guidance.json
"""

import sys

from imagebart.cli.guidance_table import main

if __name__ == "__main__":
    sys.exit(main())
