"""Which codebook entries a VQGAN actually uses on a dataset: the ``remap`` list of a first stage.

The original release ships these lists (``data/vqgan_indices/*.npy``); this computes one for a
new VQGAN. The result is the sorted unique raw indices, int64, ready for ``np.save``.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

import numpy as np
import torch

from imagebart.checkpoint_io import load_state_dict, load_state_dict_checked, strip_prefix
from imagebart.models.vqgan import CKPT_HINT, VQGANWrapper

logger = logging.getLogger(__name__)


@torch.no_grad()
def used_codebook_indices(
    model: VQGANWrapper,
    batches: Iterable[Mapping[str, torch.Tensor]],
    image_key: str = "image",
    max_batches: int | None = None,
) -> np.ndarray:
    """Sorted unique raw codebook indices that ``model`` assigns to the images in ``batches``.

    Batches hold (B, H, W, C) images in [-1, 1] under ``image_key``; any remap of ``model`` is
    bypassed (indices address the full n_embed codebook).
    """
    device = next(model.parameters()).device
    seen = torch.zeros(model.quantize.n_e, dtype=torch.bool, device=device)  # (n_embed,)
    n = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        if image_key not in batch:
            raise KeyError(f"batch has no key {image_key!r} (keys: {sorted(batch)})")
        x = model.get_input(batch, image_key).to(device)  # (B, C, H, W)
        raw = model.quantize.raw_indices(model.encode_to_prequant(x))  # (B, h, w)
        seen[raw.reshape(-1)] = True
        n += x.shape[0]
    if n == 0:
        raise ValueError("no images were encoded (empty dataset or max_batches=0)")
    used = torch.nonzero(seen).reshape(-1).cpu().numpy().astype(np.int64)
    logger.info("%d images use %d of %d codes", n, used.size, model.quantize.n_e)
    return used


# configs

VQGAN_TARGETS = (
    "imagebart.models.vqgan.VQGANWrapper",
    "imagebart.models.vqgan_training.VQModel",
    "taming.models.vqgan.VQModel",
)


def first_stage_params(config: Mapping) -> dict:
    """The VQGAN params of a VQGAN config (``model.params``) or a denoiser config
    (``model.params.first_stage_config.params``)."""
    model = config.get("model") if isinstance(config, Mapping) else None
    if not isinstance(model, Mapping) or "target" not in model:
        raise ValueError("config has no 'model' section with a 'target'")
    params = model.get("params") or {}
    if model["target"] in VQGAN_TARGETS:
        return dict(params)
    first_stage = params.get("first_stage_config")
    if isinstance(first_stage, Mapping) and "params" in first_stage:
        return dict(first_stage["params"])
    raise ValueError(
        f"config model target {model['target']!r} is neither a VQGAN ({', '.join(VQGAN_TARGETS)}) "
        "nor a model with params.first_stage_config"
    )


def vqgan_without_remap(params: Mapping, ckpt_path: str | None = None) -> VQGANWrapper:
    """A VQGAN built from ``params`` with remap disabled, weights from ``ckpt_path`` (a VQGAN
    checkpoint, or a denoiser checkpoint whose ``first_stage_model.*`` entries are used)."""
    keep = ("embed_dim", "n_embed", "ddconfig", "image_key")
    model = VQGANWrapper(**{k: params[k] for k in keep if k in params})
    ckpt_path = ckpt_path or params.get("ckpt_path")
    if ckpt_path is None:
        raise ValueError("no VQGAN checkpoint: pass --ckpt or set ckpt_path in the config")
    sd = load_state_dict(ckpt_path)
    if any(k.startswith("first_stage_model.") for k in sd):
        sd = strip_prefix(sd, "first_stage_model.")
    sd = {k: v for k, v in sd.items() if not k.startswith("loss.") and k != "quantize.used"}
    load_state_dict_checked(model, sd, source=str(ckpt_path), hint=CKPT_HINT)
    return model.freeze()
