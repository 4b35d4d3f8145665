"""Batch sampling to disk: PNGs, a grid, tokens and the exact settings (``scripts/sample.py``).

Layout of ``--outdir``::

    settings.json                  everything that determines the samples (checked on resume)
    samples/000000.png ...         one PNG per image
    batches/batch_000000.npz       tokens (and labels) of each finished batch: the resume marker
    tokens.npz                     all final tokens x_0 (n, L), plus class labels if conditional
    grid.png                       the first images as one grid

    .lock                          held while a run writes here (imagebart.sampling.outdir_lock)

Batch k draws from its own generator, seeded from (seed, k), so it is reproducible on its own:
an interrupted run resumes by sampling only the batches whose PNGs or marker are missing or
damaged, and writes only those PNGs. Every file is written atomically (temporary file + rename),
so a killed run leaves whole files; PNGs from elsewhere (an older version, a bad disk) are still
opened and decoded on resume. Without settings.json the folder holds no run to resume: batch
markers left there are dropped and every image is written anew (deleting settings.json is how
to start over deliberately in the same folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

import imagebart
from imagebart.images import (atomic_path, enlarge_factor, enlarged, image_is_intact, save_grid, save_image, strict_json,
                              write_json)
from imagebart.sampling.outdir_lock import OutdirLock
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


RESULT_KEYS = ("acceptance",)  # written into settings.json when a run ends; not compared on resume


def record_results(outdir: Path, results: dict) -> None:
    """Add a finished run's results (e.g. acceptance statistics) to its settings.json."""
    path = Path(outdir) / "settings.json"
    write_json({**json.loads(path.read_text()), **results}, path)


class SettingsMismatch(ValueError):
    """``--outdir`` holds a run with other settings: resuming would mix two experiments."""


def _previous_settings(path: Path, override_hint: str):
    """The settings a folder's earlier run recorded (None: no earlier run), without recorded results."""
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise SettingsMismatch(f"{path} is not valid JSON ({err}); delete it to start this folder over, "
                               f"or {override_hint}") from None
    return {k: v for k, v in previous.items() if k not in RESULT_KEYS} if isinstance(previous, dict) else previous


def _mismatch(outdir: Path, previous, settings: dict, override_hint: str, grows: bool) -> None:
    """Refuse settings that differ from the earlier run's (``grows``: a larger ``n`` is not a difference)."""
    if not isinstance(previous, dict):
        previous = {"settings.json": previous}
    keys = sorted(k for k in settings if previous.get(k) != settings[k]
                  and not (grows and k == "n" and isinstance(previous.get(k), int) and settings[k] > previous[k]))
    if keys:
        details = "; ".join(f"{k}: was {previous.get(k)!r}, now {settings[k]!r}" for k in keys[:6])
        raise SettingsMismatch(f"{outdir} holds a run with other settings ({details}). Resume with the same "
                               f"arguments{' (or a larger -n to add images)' if grows else ''}, {override_hint}, "
                               f"or delete {outdir / 'settings.json'} to start over there")


def check_settings_early(outdir, settings: dict, override_hint: str = "choose a new --outdir",
                         grows: bool = False) -> None:
    """Before any expensive work (loading a chain): refuse when the folder's earlier run differs in one
    of the given ``settings`` (a subset known from the arguments alone)."""
    outdir = Path(outdir)
    previous = _previous_settings(outdir / "settings.json", override_hint)
    if previous is not None:
        _mismatch(outdir, previous, json.loads(strict_json(settings)), override_hint, grows)


def check_or_write_settings(outdir: Path, settings: dict, override_hint: str = "choose a new --outdir",
                            grows: bool = False) -> bool:
    """Write settings.json, or check that it matches (results recorded there are not settings); returns
    True when resuming. ``grows``: a run may continue with a larger ``n`` (the first images stay)."""
    outdir, normalised = Path(outdir), json.loads(strict_json(settings))
    previous = _previous_settings(outdir / "settings.json", override_hint)
    if previous is None:
        write_json(normalised, outdir / "settings.json")
        return False
    _mismatch(outdir, previous, {k: normalised.get(k) for k in set(previous) | set(normalised)}, override_hint,
              grows)
    if normalised != previous:  # grown
        old, size = previous["n"], normalised.get("batch_size", 1)
        redrawn = (f"; images {old - old % size}..{old - 1} of its last, partial batch are drawn again in a full "
                   "batch" if old % size else "")
        logger.info("%s: growing the run from %d to %d images%s", outdir, old, normalised["n"], redrawn)
        write_json(normalised, outdir / "settings.json")
    return True


def argument_settings(sampling_config, n: int, batch_size: int, seed: int, device_type: str, precision: str,
                      use_cache: bool, ema: bool, offload: bool, caption=None) -> dict:
    """The settings the command line alone decides, so a run can be checked before any chain is loaded."""
    return {
        "sampling_config": str(sampling_config.source),
        "checkpoints": [str(p) for p in sampling_config.checkpoints],
        "configs": [str(p) for p in sampling_config.configs],
        "n": n, "batch_size": batch_size, "seed": seed,
        **({"caption": caption} if caption is not None else {}),
        "device": device_type, "precision": precision, "use_cache": use_cache, "ema": ema, "offload": offload,
    }


def sampling_settings(chain, sampling_config, n: int, batch_size: int, seed: int, top_k, temperature,
                      class_label, precision: str, use_cache: bool, ema: bool, offload: bool,
                      guidance_scale=1.0, caption=None, gamma=None) -> dict:
    """Everything that determines the samples, with the per-scale schedules resolved."""
    return {
        **argument_settings(sampling_config, n, batch_size, seed, chain.device.type, precision, use_cache, ema,
                            offload, caption),
        "batch_seeds": "numpy SeedSequence([seed, batch_index]), top 63 bits",
        "schedule_order": f"sampling order: scale {chain.n_scales} first, scale 1 last",
        "top_k": chain.top_k_schedule(top_k),
        "temperature": chain.temperature_schedule(temperature),
        "guidance_scale": chain.guidance_schedule(guidance_scale),
        "gamma": chain.gamma_schedule(gamma) if use_cache else [0] * chain.n_scales,
        "class_label": class_label,
        "chain": chain.describe(), "versions": versions(),
    }


def _read_png(path: Path) -> torch.Tensor:
    array = np.array(Image.open(path).convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W) in [-1, 1]


def read_marker(marker: Path, n_images: int) -> Optional[np.ndarray]:
    """The tokens of a finished batch, or None when its marker is missing or damaged."""
    try:
        with np.load(marker) as arrays:
            tokens = arrays["tokens"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return tokens if tokens.shape[0] == n_images else None


def drop_stale_markers(batches_dir: Path, pattern: str = "batch_*.npz") -> None:
    """A folder without settings.json holds no run to resume: forget its finished batches."""
    stale = sorted(batches_dir.glob(pattern))
    if stale:
        logger.warning("%s: no settings.json, so its %d batch markers belong to no known run; sampling every "
                       "batch anew", batches_dir.parent, len(stale))
    for marker in stale:
        marker.unlink()


def run_sampling(chain, outdir, n: int, batch_size: int, seed: int, top_k=None, temperature=1.0,
                 class_label=None, precision: str = "32", use_cache: bool = True,
                 settings: Optional[dict] = None, progress_for_batch: Optional[Callable] = None,
                 npz: bool = False, guidance_scale=1.0, caption=None, gamma=None, save_chain: bool = False,
                 grid_scale: Optional[int] = None) -> dict:
    """Sample ``n`` images in batches into ``outdir`` (resuming a previous run, or growing it to a larger
    ``n``); returns a summary.

    ``caption`` (text-conditional chains): one string, or a list cycled over the images.
    ``npz``: also write ``samples.npz`` for the ADM evaluation suite (uint8 NHWC images under
    ``arr_0``, class labels under ``arr_1`` for conditional chains).

    ``save_chain``: also write ``chains/<index>.png``, each image's x_T -> ... -> x_0 decoded in one row.
    ``grid_scale``: nearest-neighbour upscaling of grid.png (None: small images up to about 96 pixels).
    ``progress_for_batch(index, n_batches)`` may return a ``progress(t, step, steps)`` callback.
    The folder is locked (:class:`OutdirLock`) from the settings check to the last file.
    """
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    if isinstance(class_label, list) and chain.is_conditional and len(class_label) > n:
        raise ValueError(f"--class_label lists {len(class_label)} labels for {n} images")
    outdir = Path(outdir)
    # check every argument before touching the disk
    chain.top_k_schedule(top_k)
    chain.temperature_schedule(temperature)
    chain.guidance_schedule(guidance_scale)
    chain.gamma_schedule(gamma)
    chain.class_tokens(labels_for_batch(class_label, 0, min(n, batch_size)), min(n, batch_size),
                       chain.make_generator(0))
    chain.caption_tokens(labels_for_batch(caption, 0, min(n, batch_size)), min(n, batch_size))
    with precision_context(chain.device, precision):
        pass
    strict_json(settings or {})
    with OutdirLock(outdir):
        samples_dir, batches_dir = outdir / "samples", outdir / "batches"
        if not (outdir / "settings.json").is_file() and batches_dir.is_dir():
            drop_stale_markers(batches_dir)
        resumed = check_or_write_settings(outdir, settings or {}, grows=True)
        samples_dir.mkdir(parents=True, exist_ok=True)
        batches_dir.mkdir(parents=True, exist_ok=True)
        draw = dict(top_k=top_k, temperature=temperature, guidance_scale=guidance_scale, use_cache=use_cache,
                    gamma=gamma, return_intermediates=save_chain)
        counts = _sample_batches(chain, outdir, n, batch_size, seed, class_label, caption, precision, draw,
                                 progress_for_batch, grid_scale)
        _write_totals(chain, outdir, n, batch_size, npz, grid_scale)
    summary = {"outdir": str(outdir), "resumed": resumed, **counts}
    logger.info("%s", summary)
    return summary


def _sample_batches(chain, outdir: Path, n, batch_size, seed, class_label, caption, precision, draw: dict,
                    progress_for_batch, grid_scale: Optional[int] = None) -> dict:
    """Sample every batch whose marker or PNGs are missing or damaged; write only those PNGs.
    ``draw``: the keyword arguments every batch passes to :meth:`ImageBARTChain.sample`."""
    samples_dir, batches_dir = outdir / "samples", outdir / "batches"
    n_batches = math.ceil(n / batch_size)
    done, sampled, written = 0, 0, 0
    for index in range(n_batches):
        start, stop = index * batch_size, min(n, (index + 1) * batch_size)
        pngs = [samples_dir / f"{i:06d}.png" for i in range(start, stop)]
        rows = [outdir / "chains" / f"{i:06d}.png" for i in range(start, stop)] if draw["return_intermediates"] else []
        marker = batches_dir / f"batch_{index:06d}.npz"
        previous = read_marker(marker, stop - start) if marker.is_file() else None
        missing = [p for p in pngs + rows if not image_is_intact(p)]
        if previous is not None and not missing:
            done += 1
            continue
        for path in missing:
            if path.exists():
                logger.warning("%s is damaged (a run killed while writing it?); writing it again", path)
        progress = progress_for_batch(index, n_batches) if progress_for_batch is not None else None
        with precision_context(chain.device, precision):
            result = chain.sample(stop - start, class_label=labels_for_batch(class_label, start, stop),
                                  caption=labels_for_batch(caption, start, stop),
                                  generator=chain.make_generator(batch_seed(seed, index)), progress=progress, **draw)
        tokens = result.tokens.cpu().numpy()  # (b, L)
        if previous is not None and not np.array_equal(previous, tokens):
            logger.warning("batch %d came out differently than in the interrupted run (other device or "
                           "library versions?); keeping the new tokens", index)
        redo = set(missing) if previous is not None and np.array_equal(previous, tokens) else set(pngs + rows)
        for image, path in zip(result.images, pngs):
            if path in redo or not path.is_file():
                save_image(image, path)
                written += 1
        if any(path in redo or not path.is_file() for path in rows):
            steps = torch.stack([chain.decode(x) for x in result.intermediates], dim=1).cpu()  # (b, T+1, 3, H, W)
            for row, path in zip(steps, rows):
                if path in redo or not path.is_file():
                    save_grid(upscaled(row, grid_scale), path, nrow=len(row))
        arrays = {"tokens": tokens, "image_index": np.arange(start, stop)}
        if result.class_label is not None:
            arrays["class_label"] = result.class_label.cpu().numpy()
        if result.caption is not None:
            arrays["caption"] = np.array(result.caption)
        with atomic_path(marker) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        sampled += 1
    return {"batches_sampled": sampled, "batches_already_done": done, "images_written": written}


def _write_totals(chain, outdir: Path, n: int, batch_size: int, npz: bool = False,
                  grid_scale: Optional[int] = None) -> None:
    """tokens.npz (all batches), grid.png and optionally samples.npz, from the markers and the PNGs on disk."""
    batches = [np.load(outdir / "batches" / f"batch_{k:06d}.npz") for k in range(math.ceil(n / batch_size))]
    final = {"tokens": np.concatenate([b["tokens"] for b in batches])}
    if chain.is_conditional:
        final["class_label"] = np.concatenate([b["class_label"] for b in batches])
    if chain.is_text_conditional:
        final["caption"] = np.concatenate([b["caption"] for b in batches])
    write_outputs(chain, outdir, n, final, npz, grid_scale)


def write_outputs(chain, outdir: Path, n: int, final: dict, npz: bool = False, grid_scale: Optional[int] = None) -> None:
    """tokens.npz (``final``'s arrays and the latent shape), grid.png (upscaled ``grid_scale`` times,
    None: small images up to about 96 pixels) and optionally samples.npz (images from the PNGs on disk,
    labels from ``final["class_label"]``)."""
    final = {**final, "latent_shape": np.array(chain.latent_shape)}
    with atomic_path(outdir / "tokens.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **final)
    if npz:
        arrays = {"arr_0": np.stack([np.asarray(Image.open(outdir / "samples" / f"{i:06d}.png").convert("RGB"))
                                     for i in range(n)])}  # (n, H, W, 3) uint8
        if chain.is_conditional:
            arrays["arr_1"] = final["class_label"].astype(np.int64)
        with atomic_path(outdir / "samples.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
    shown = torch.stack([_read_png(outdir / "samples" / f"{i:06d}.png") for i in range(min(n, GRID_MAX_IMAGES))])
    save_grid(upscaled(shown, grid_scale), outdir / "grid.png", nrow=min(8, len(shown)))


def upscaled(images: torch.Tensor, scale: Optional[int] = None) -> torch.Tensor:
    """(B, C, H, W) enlarged ``scale`` times with nearest neighbours (None: to at least
    :data:`~imagebart.images.READABLE_SIDE` pixels), so a grid of 32-pixel images is readable."""
    scale = scale if scale is not None else enlarge_factor(images.shape[-1])
    return enlarged(images, check_positive_int("grid_scale", scale))
