"""``scripts/pretokenize.py``: encode a training config's datasets once with its frozen first stage.

Training then reads x_0 tokens (:class:`imagebart.data.tokens.PretokenizedImages`) instead of
running the VQGAN encoder on every batch. ``--flips`` also stores each image's mirrored encoding,
so the token dataset can flip at random as the image datasets do (their own random flip is switched
off while encoding). With ``remap`` and ``unknown_index: random`` encoding is not deterministic at
codes outside the used list; the tokens written are one draw, kept for every epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from imagebart.cli.common import resolve_device, run_command
from imagebart.images import atomic_path

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/pretokenize.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--base", nargs="+", required=True, metavar="config.yaml",
                        help="the training config(s), as main.py --base takes them")
    parser.add_argument("--out", required=True, help="folder for <split>.npz")
    parser.add_argument("--splits", default="train,validation", help="comma-separated data.params entries")
    parser.add_argument("--flips", action="store_true", help="also store each image's mirrored encoding")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--device", default=None)
    parser.add_argument("--force", action="store_true", help="overwrite existing .npz files")
    return parser


def file_sha256(path) -> Optional[str]:
    if not path or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@torch.no_grad()
def encode_split(first_stage, dataset, batch_size: int, flips: bool, device) -> dict:
    """tokens (N, L) (and flipped, class_label, caption when there are any) of every item."""
    if hasattr(dataset, "flip_p"):
        dataset.flip_p = 0.0  # mirrored encodings are stored separately (--flips)
    from tqdm import tqdm

    columns = {"tokens": [], **({"flipped": []} if flips else {}), "class_label": [], "caption": []}
    for start in tqdm(range(0, len(dataset), batch_size), desc="encoding", unit="batch", file=sys.stderr):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        images = torch.from_numpy(np.stack([np.asarray(item["image"]) for item in items])).to(device)
        images = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W) in [-1, 1]
        columns["tokens"].append(first_stage.encode_tokens(images).cpu().numpy())
        if flips:
            columns["flipped"].append(first_stage.encode_tokens(images.flip(-1)).cpu().numpy())
        for key in ("class_label", "caption"):
            if all(key in item for item in items):
                columns[key] += [item[key] for item in items]
    arrays = {key: np.concatenate(columns[key]) for key in ("tokens", "flipped") if key in columns}
    dtype = np.int16 if first_stage.num_codes <= np.iinfo(np.int16).max else np.int32
    arrays = {key: value.astype(dtype) for key, value in arrays.items()}
    if len(columns["class_label"]) == len(dataset):
        arrays["class_label"] = np.asarray(columns["class_label"], dtype=np.int64)
    if len(columns["caption"]) == len(dataset):
        arrays["caption"] = np.asarray(columns["caption"], dtype=str)
    return arrays


def run(args) -> list:
    from imagebart.config import merge_configs
    from imagebart.util import instantiate_from_config

    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    config = merge_configs(args.base)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    data_params = config.get("data", {}).get("params", {})
    missing = [s for s in splits if s not in data_params]
    if missing:
        raise ValueError(f"--splits {missing} not in data.params of {args.base} (it has {sorted(data_params)})")
    out = Path(args.out)
    targets = [out / f"{split}.npz" for split in splits]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        raise ValueError(f"{existing} exist; pass --force to overwrite them")
    device = resolve_device(args.device)
    stage_config = OmegaConf.to_container(config.model.params.first_stage_config, resolve=True)
    first_stage = instantiate_from_config(stage_config).eval().to(device)
    meta = {"first_stage": stage_config,
            "first_stage_ckpt_sha256": file_sha256(stage_config["params"].get("ckpt_path")),
            "num_codes": first_stage.num_codes, "latent_shape": list(first_stage.latent_shape), "flips": args.flips,
            "configs": [str(p) for p in args.base]}
    out.mkdir(parents=True, exist_ok=True)
    for split, target in zip(splits, targets):
        source = OmegaConf.to_container(data_params[split], resolve=True)
        arrays = encode_split(first_stage, instantiate_from_config(source), args.batch_size, args.flips, device)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, meta=np.asarray(json.dumps({**meta, "source": source})), **arrays)
        logger.info("%s: %d images -> %s tokens (%s)", split, len(arrays["tokens"]), arrays["tokens"].shape, target)
    return targets


def main(argv: Optional[Sequence[str]] = None) -> int:
    _, written = run_command(get_parser, run, argv)
    sys.stdout.write("".join(f"wrote {path}\n" for path in written))
    return 0
