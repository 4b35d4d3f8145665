"""Batch sampling to disk: PNGs, a grid, tokens and the exact settings (``scripts/sample.py``).

Layout of ``--outdir``::

    settings.json                  everything that determines the samples (checked on resume)
    samples/000000.png ...         one PNG per image
    batches/batch_000000.npz       tokens (and labels) of each finished batch: the resume marker
    tokens.npz                     all final tokens x_0 (n, L), plus class labels if conditional
    grid.png                       the first images as one grid

Batch k draws from its own generator, seeded from (seed, k), so it is reproducible on its own:
an interrupted run resumes by sampling only the batches whose PNGs or marker are missing,
and writes only the missing PNGs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

import imagebart
from imagebart.images import save_grid, save_image
from imagebart.util import check_positive_int

logger = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16", "16")
GRID_MAX_IMAGES = 64


# helpers


def batch_seed(seed: int, index: int) -> int:
    """Seed of batch ``index``: independent streams per batch, reproducible from (seed, index) alone."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def labels_for_batch(class_label, start: int, stop: int):
    """The labels of images start..stop-1: an int for all, a list cycled over the images, or 'random'."""
    if isinstance(class_label, list):
        return [class_label[i % len(class_label)] for i in range(start, stop)]
    return class_label


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str):
    """Autocast for ``--precision`` (bf16 on CPU or CUDA, 16 on CUDA only)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "32":
        yield
        return
    if precision == "16" and device.type != "cuda":
        raise ValueError(f"--precision 16 needs a CUDA device (got {device}); use 32 or bf16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def versions() -> dict:
    """Library versions that decide the numerics (a resumed run must use the same)."""
    return {"imagebart": imagebart.__version__, "torch": torch.__version__,
            "x-transformers": version("x-transformers"), "numpy": np.__version__,
            "python": platform.python_version()}


# the run


class SettingsMismatch(ValueError):
    """``--outdir`` holds a run with other settings: resuming would mix two experiments."""


def check_or_write_settings(outdir: Path, settings: dict) -> bool:
    """Write settings.json, or check that it matches; returns True when resuming."""
    path = outdir / "settings.json"
    normalised = json.loads(json.dumps(settings))
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != normalised:
            keys = sorted(k for k in set(previous) | set(normalised) if previous.get(k) != normalised.get(k))
            details = "; ".join(f"{k}: was {previous.get(k)!r}, now {normalised.get(k)!r}" for k in keys[:6])
            raise SettingsMismatch(f"{outdir} holds a run with other settings ({details}). Resume with the same "
                                   "arguments, or choose a new --outdir")
        return True
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(normalised, indent=2) + "\n")
    os.replace(tmp, path)
    return False


def sampling_settings(chain, sampling_config, n: int, batch_size: int, seed: int, top_k, temperature,
                      class_label, precision: str, use_cache: bool, ema: bool, offload: bool) -> dict:
    """Everything that determines the samples, with the per-scale schedules resolved."""
    return {
        "sampling_config": str(sampling_config.source),
        "checkpoints": [str(p) for p in sampling_config.checkpoints],
        "configs": [str(p) for p in sampling_config.configs],
        "n": n, "batch_size": batch_size, "seed": seed,
        "batch_seeds": "numpy SeedSequence([seed, batch_index]), top 63 bits",
        "schedule_order": f"sampling order: scale {chain.n_scales} first, scale 1 last",
        "top_k": chain.top_k_schedule(top_k),
        "temperature": chain.temperature_schedule(temperature),
        "class_label": class_label,
        "device": chain.device.type, "precision": precision, "use_cache": use_cache, "ema": ema,
        "offload": offload, "chain": chain.describe(), "versions": versions(),
    }


def _read_png(path: Path) -> torch.Tensor:
    array = np.array(Image.open(path).convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W) in [-1, 1]


def run_sampling(chain, outdir, n: int, batch_size: int, seed: int, top_k=None, temperature=1.0,
                 class_label=None, precision: str = "32", use_cache: bool = True,
                 settings: Optional[dict] = None, progress_for_batch: Optional[Callable] = None) -> dict:
    """Sample ``n`` images in batches into ``outdir`` (resuming a previous run); returns a summary.

    ``progress_for_batch(index, n_batches)`` may return a ``progress(t, step, steps)`` callback.
    """
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    if isinstance(class_label, list) and chain.is_conditional and len(class_label) > n:
        raise ValueError(f"--class_label lists {len(class_label)} labels for {n} images")
    outdir = Path(outdir)
    # check every argument before touching the disk
    chain.top_k_schedule(top_k)
    chain.temperature_schedule(temperature)
    chain.class_tokens(labels_for_batch(class_label, 0, min(n, batch_size)), min(n, batch_size),
                       chain.make_generator(0))
    with precision_context(chain.device, precision):
        pass
    resumed = check_or_write_settings(outdir, settings or {})
    samples_dir, batches_dir = outdir / "samples", outdir / "batches"
    samples_dir.mkdir(parents=True, exist_ok=True)
    batches_dir.mkdir(parents=True, exist_ok=True)

    n_batches = math.ceil(n / batch_size)
    done, sampled, written = 0, 0, 0
    for index in range(n_batches):
        start, stop = index * batch_size, min(n, (index + 1) * batch_size)
        pngs = [samples_dir / f"{i:06d}.png" for i in range(start, stop)]
        marker = batches_dir / f"batch_{index:06d}.npz"
        if marker.is_file() and all(p.is_file() for p in pngs):
            done += 1
            continue
        progress = progress_for_batch(index, n_batches) if progress_for_batch is not None else None
        with precision_context(chain.device, precision):
            result = chain.sample(stop - start, top_k=top_k, temperature=temperature,
                                  class_label=labels_for_batch(class_label, start, stop),
                                  generator=chain.make_generator(batch_seed(seed, index)),
                                  progress=progress, use_cache=use_cache)
        tokens = result.tokens.cpu().numpy()  # (b, L)
        if marker.is_file():
            previous = np.load(marker)["tokens"]
            if not np.array_equal(previous, tokens):
                logger.warning("batch %d came out differently than in the interrupted run (other device or "
                               "library versions?); keeping the new tokens", index)
        for image, path in zip(result.images, pngs):
            if not path.is_file():
                save_image(image, path)
                written += 1
        arrays = {"tokens": tokens, "image_index": np.arange(start, stop)}
        if result.class_label is not None:
            arrays["class_label"] = result.class_label.cpu().numpy()
        tmp = marker.with_name(marker.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, marker)
        sampled += 1

    batches = [np.load(batches_dir / f"batch_{k:06d}.npz") for k in range(n_batches)]
    final = {"tokens": np.concatenate([b["tokens"] for b in batches]),
             "latent_shape": np.array(chain.latent_shape)}
    if chain.is_conditional:
        final["class_label"] = np.concatenate([b["class_label"] for b in batches])
    np.savez(outdir / "tokens.npz", **final)
    shown = [_read_png(samples_dir / f"{i:06d}.png") for i in range(min(n, GRID_MAX_IMAGES))]
    save_grid(torch.stack(shown), outdir / "grid.png", nrow=min(8, len(shown)))
    summary = {"outdir": str(outdir), "resumed": resumed, "batches_sampled": sampled,
               "batches_already_done": done, "images_written": written}
    logger.info("%s", summary)
    return summary
