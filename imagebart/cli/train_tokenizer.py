"""``scripts/train_tokenizer.py``: train the caption tokenizer of a text-conditional chain on its training captions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from imagebart.cli.common import HelpFormatter, run_command

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/train_tokenizer.py", formatter_class=HelpFormatter,
        description="Train a BPE caption tokenizer on the captions of a training config's train split (or a "
                    ".tsv / .jsonl caption list) and save it as one JSON file, to name in the config's "
                    "conditioner_config.params.tokenizer.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="training config: its data.params.train dataset's captions")
    source.add_argument("--captions", help="a caption list (.tsv path<TAB>caption, or .jsonl)")
    parser.add_argument("--out", required=True, help="tokenizer JSON to write")
    parser.add_argument("--vocab_size", type=int, default=1000, help="BPE vocabulary, special tokens included")
    parser.add_argument("--key", default="caption", help="the caption entry of the dataset's items")
    parser.add_argument("--max_captions", type=int, default=None, help="use at most this many captions")
    return parser


def dataset_captions(config_path: str, key: str, limit: Optional[int]) -> list:
    """The captions of a config's training data (fast where the dataset lists them)."""
    from imagebart.config import load_config
    from imagebart.util import instantiate_from_config

    config = load_config(config_path)
    try:
        dataset = instantiate_from_config(config.data.params.train)
    except Exception as err:  # noqa: BLE001 - a missing key or a bad dataset: name the config
        raise ValueError(f"--config {config_path}: cannot build its data.params.train dataset ({err})") from err
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if hasattr(dataset, "captions"):
        return list(dataset.captions)[:count]
    captions = []
    for index in range(count):
        item = dataset[index]
        if key not in item:
            raise ValueError(f"--config {config_path}: its training items have no {key!r} (keys {sorted(item)})")
        captions.append(str(item[key]))
    return captions


def run(args) -> dict:
    from imagebart.data.captions import read_caption_list
    from imagebart.modules.text import train_tokenizer

    if args.vocab_size < 8:
        raise ValueError(f"--vocab_size must be >= 8, got {args.vocab_size}")
    if args.max_captions is not None and args.max_captions < 1:
        raise ValueError(f"--max_captions must be >= 1, got {args.max_captions}")
    if args.captions:
        captions = [c for _, _, c in read_caption_list(Path(args.captions))][:args.max_captions]
    else:
        captions = dataset_captions(args.config, args.key, args.max_captions)
    tokenizer = train_tokenizer(captions, args.vocab_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tokenizer.save(str(tmp))
    tmp.replace(out)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(captions)]
    summary = {"out": str(out), "captions": len(captions), "vocab_size": tokenizer.get_vocab_size(),
               "longest_caption_tokens": max(lengths), "mean_caption_tokens": sum(lengths) / len(lengths)}
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, summary = run_command(get_parser, run, argv)
    sys.stdout.write(f"wrote {summary['out']}: {summary['vocab_size']} tokens from {summary['captions']} captions; "
                     f"captions take {summary['mean_caption_tokens']:.1f} tokens on average, "
                     f"{summary['longest_caption_tokens']} at most (set max_length at least that)\n")
    return 0
