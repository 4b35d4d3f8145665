"""Train the caption tokenizer of a text-conditional chain.

    python scripts/train_tokenizer.py --config configs/demo/text_scale1.yaml --out models/demo/tokenizer.json --vocab_size 160
    python scripts/train_tokenizer.py --captions data/cc3m/train.tsv --out tokenizer.json --vocab_size 8000
"""

import sys

from imagebart.cli.train_tokenizer import main

if __name__ == "__main__":
    sys.exit(main())
