"""Write the remap list of a VQGAN: the codebook indices it actually uses on a dataset.

    python scripts/compute_remap.py --config configs/demo/vqgan.yaml --ckpt logs/.../last.ckpt \
        --out data/vqgan_indices/demo_indices.npy [--data dataset.yaml] [--max_batches N] [--batch_size 32]

``--config`` is a VQGAN config or a denoiser config (its ``first_stage_config`` is used).
``--data`` is a YAML file with a dataset ``{target, params}`` or a full config whose
``data.params.train`` is used; without it, ``data.params.train`` of ``--config`` is used.
Point ``first_stage_config.params.remap`` at the written file.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from imagebart.cli.common import HelpFormatter, configure_logging, run_cli
from imagebart.remap import first_stage_params, used_codebook_indices, vqgan_without_remap
from imagebart.util import instantiate_from_config

logger = logging.getLogger("imagebart.compute_remap")


def dataset_config(config: Mapping, source: str) -> Mapping:
    """A dataset ``{target, params}``, given directly or as ``data.params.train`` of a config."""
    if "target" in config and "model" not in config:
        return config
    try:
        return config["data"]["params"]["train"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{source}: expected a dataset {{target, params}} or a config with data.params.train"
        ) from None


def main(argv=None) -> np.ndarray:
    parser = argparse.ArgumentParser(prog="scripts/compute_remap.py", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="VQGAN or denoiser config YAML")
    parser.add_argument("--ckpt", default=None, help="VQGAN checkpoint (None: the config's ckpt_path)")
    parser.add_argument("--data", default=None, help="dataset YAML (None: the config's data.params.train)")
    parser.add_argument("--out", required=True, type=Path, help=".npy file to write")
    parser.add_argument("--max_batches", type=int, default=None, help="stop after this many batches")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    args = parser.parse_args(argv)

    config = OmegaConf.to_container(OmegaConf.load(args.config), resolve=True)
    params = first_stage_params(config)
    model = vqgan_without_remap(params, ckpt_path=args.ckpt)
    if args.data is not None:
        data = dataset_config(OmegaConf.to_container(OmegaConf.load(args.data), resolve=True), args.data)
    else:
        data = dataset_config(config, args.config)
    dataset = instantiate_from_config(data)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers)

    used = used_codebook_indices(model, loader, image_key=params.get("image_key", "image"),
                                 max_batches=args.max_batches)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, used)
    logger.info("%s: %d / %d codebook entries used", args.out, used.size, model.quantize.n_e)
    return used


if __name__ == "__main__":
    configure_logging()
    run_cli("scripts/compute_remap.py", main)
