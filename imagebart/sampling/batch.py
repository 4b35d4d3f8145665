"""Batch sampling to disk: PNGs, a grid, tokens and the exact settings (``scripts/sample.py``).

Layout of ``--outdir``::

    settings.json                  everything that determines the samples (checked on resume)
    samples/000000.png ...         one PNG per image
    batches/batch_000000.npz       tokens (and labels) of each finished batch: the resume marker
    tokens.npz                     all final tokens x_0 (n, L), plus class labels if conditional
    grid.png                       the first images as one grid

    .lock                          held (``flock``) while a run writes here; names its process

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
import os
import platform
import socket
import sys
import time
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

import imagebart
from imagebart.images import atomic_path, image_is_intact, save_grid, save_image, strict_json, write_json
from imagebart.util import check_positive_int

logger = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16", "16")
GRID_MAX_IMAGES = 64
LOCK_NAME = ".lock"


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


def check_or_write_settings(outdir: Path, settings: dict, override_hint: str = "choose a new --outdir") -> bool:
    """Write settings.json, or check that it matches (results recorded there are not settings); returns
    True when resuming."""
    path = Path(outdir) / "settings.json"
    normalised = json.loads(strict_json(settings))
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise SettingsMismatch(f"{path} is not valid JSON ({err}); delete it to start this folder over, "
                                   f"or {override_hint}") from None
        if isinstance(previous, dict):
            previous = {k: v for k, v in previous.items() if k not in RESULT_KEYS}
        if previous != normalised:
            keys = sorted(k for k in set(previous) | set(normalised) if previous.get(k) != normalised.get(k))
            details = "; ".join(f"{k}: was {previous.get(k)!r}, now {normalised.get(k)!r}" for k in keys[:6])
            raise SettingsMismatch(f"{Path(outdir)} holds a run with other settings ({details}). Resume with the "
                                   f"same arguments, {override_hint}, or delete {path} to start over there")
        return True
    write_json(normalised, path)
    return False


class OutdirLocked(ValueError):
    """Another run is writing to the same output folder."""


class OutdirLock:
    """``with OutdirLock(outdir):`` one writer per output folder.

    An ``flock`` on ``<outdir>/.lock``: the kernel drops it when the holder dies, so a lock left by
    a killed run never blocks. The file records the holder (pid, host, start, command) for the
    message the next run shows; it is never deleted, as deleting it would let two runs lock two
    different files of the same name.
    """

    def __init__(self, outdir, name: str = "--outdir"):
        self.outdir, self.name, self.fd = Path(outdir), name, None

    def __enter__(self) -> "OutdirLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: run unlocked rather than not at all
            logger.warning("no file locking on this system: make sure no other run writes to %s", self.outdir)
            return self
        path = self.outdir / LOCK_NAME
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"{self.name} {self.outdir}: cannot create {path} ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            raise OutdirLocked(f"{self.name} {self.outdir} is in use by another run ({describe_holder(holder)}); "
                               f"wait for it to finish, or choose another {self.name}") from None
        self._remove_stale_temporaries()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv)[:300]}).encode())
        self.fd = fd
        return self

    def _remove_stale_temporaries(self) -> None:
        """Temporary files a killed writer left (``.<name>.<random>.tmp``): only the lock holder may remove them."""
        for stale in self.outdir.rglob(".*.tmp"):
            logger.info("removing %s, left by an interrupted run", stale)
            stale.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the flock
            self.fd = None


def describe_holder(text: str) -> str:
    """The lock file's record as words, saying whether its process still runs on this host."""
    try:
        holder = json.loads(text)
        pid, host = int(holder["pid"]), str(holder["host"])
    except (ValueError, KeyError, TypeError):
        return "its holder left no record yet"
    words = f"process {pid} on {host}, started {holder.get('started', '?')}: {holder.get('command', '?')}"
    if host == socket.gethostname() and not pid_alive(pid):
        words += f"; process {pid} has ended, so a child process of it still holds the lock"
    return words


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sampling_settings(chain, sampling_config, n: int, batch_size: int, seed: int, top_k, temperature,
                      class_label, precision: str, use_cache: bool, ema: bool, offload: bool,
                      guidance_scale=1.0, caption=None, gamma=None) -> dict:
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
        "guidance_scale": chain.guidance_schedule(guidance_scale),
        "gamma": chain.gamma_schedule(gamma) if use_cache else [0] * chain.n_scales,
        "class_label": class_label,
        **({"caption": caption} if caption is not None else {}),
        "device": chain.device.type, "precision": precision, "use_cache": use_cache, "ema": ema,
        "offload": offload, "chain": chain.describe(), "versions": versions(),
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
                 npz: bool = False, guidance_scale=1.0, caption=None, gamma=None) -> dict:
    """Sample ``n`` images in batches into ``outdir`` (resuming a previous run); returns a summary.

    ``caption`` (text-conditional chains): one string, or a list cycled over the images.
    ``npz``: also write ``samples.npz`` for the ADM evaluation suite (uint8 NHWC images under
    ``arr_0``, class labels under ``arr_1`` for conditional chains).

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
        resumed = check_or_write_settings(outdir, settings or {})
        samples_dir.mkdir(parents=True, exist_ok=True)
        batches_dir.mkdir(parents=True, exist_ok=True)
        draw = dict(top_k=top_k, temperature=temperature, guidance_scale=guidance_scale, use_cache=use_cache,
                    gamma=gamma)
        counts = _sample_batches(chain, outdir, n, batch_size, seed, class_label, caption, precision, draw,
                                 progress_for_batch)
        _write_totals(chain, outdir, n, batch_size, npz)
    summary = {"outdir": str(outdir), "resumed": resumed, **counts}
    logger.info("%s", summary)
    return summary


def _sample_batches(chain, outdir: Path, n, batch_size, seed, class_label, caption, precision, draw: dict,
                    progress_for_batch) -> dict:
    """Sample every batch whose marker or PNGs are missing or damaged; write only those PNGs.
    ``draw``: the keyword arguments every batch passes to :meth:`ImageBARTChain.sample`."""
    samples_dir, batches_dir = outdir / "samples", outdir / "batches"
    n_batches = math.ceil(n / batch_size)
    done, sampled, written = 0, 0, 0
    for index in range(n_batches):
        start, stop = index * batch_size, min(n, (index + 1) * batch_size)
        pngs = [samples_dir / f"{i:06d}.png" for i in range(start, stop)]
        marker = batches_dir / f"batch_{index:06d}.npz"
        previous = read_marker(marker, stop - start) if marker.is_file() else None
        missing = [p for p in pngs if not image_is_intact(p)]
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
        redo = set(missing) if previous is not None and np.array_equal(previous, tokens) else set(pngs)
        for image, path in zip(result.images, pngs):
            if path in redo or not path.is_file():
                save_image(image, path)
                written += 1
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


def _write_totals(chain, outdir: Path, n: int, batch_size: int, npz: bool = False) -> None:
    """tokens.npz (all batches), grid.png and optionally samples.npz, from the markers and the PNGs on disk."""
    batches = [np.load(outdir / "batches" / f"batch_{k:06d}.npz") for k in range(math.ceil(n / batch_size))]
    final = {"tokens": np.concatenate([b["tokens"] for b in batches])}
    if chain.is_conditional:
        final["class_label"] = np.concatenate([b["class_label"] for b in batches])
    if chain.is_text_conditional:
        final["caption"] = np.concatenate([b["caption"] for b in batches])
    write_outputs(chain, outdir, n, final, npz)


def write_outputs(chain, outdir: Path, n: int, final: dict, npz: bool = False) -> None:
    """tokens.npz (``final``'s arrays and the latent shape), grid.png and optionally samples.npz (images
    from the PNGs on disk, labels from ``final["class_label"]``)."""
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
    shown = [_read_png(outdir / "samples" / f"{i:06d}.png") for i in range(min(n, GRID_MAX_IMAGES))]
    save_grid(torch.stack(shown), outdir / "grid.png", nrow=min(8, len(shown)))
