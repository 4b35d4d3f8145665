"""Checkpoints written so that a crash or ``kill -9`` at any moment leaves the previous one intact.

Lightning's own save writes into ``$TMPDIR`` and moves the file; across filesystems the move is a
copy, and a kill during it leaves a truncated ``last.ckpt`` where the good one was. Here every
checkpoint is written to a temporary file in its DESTINATION folder, flushed and fsynced, renamed
over the old one with ``os.replace`` (atomic within one filesystem) and the folder is fsynced, so
the name always points at a complete file: the old one or the new one.

:class:`AtomicCheckpointIO` is the Trainer's ``plugins=`` entry (every ModelCheckpoint save, and
``trainer.save_checkpoint``); :func:`atomic_torch_save` is the same for direct saves.
On a resume it also reads the checkpoint without running pickled code and hands Lightning the
copy :mod:`imagebart.train` already read to check it (one read, not two).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from imagebart.checkpoint_io import load_checkpoint

logger = logging.getLogger(__name__)

# test-only: the file name whose save sleeps between writing the temporary file and renaming it
# (the fault tests kill the process in that window)
PAUSE_ENV = "IMAGEBART_TEST_PAUSE_BEFORE_RENAME"
PAUSE_SECONDS = 600
TEMP_SUFFIX = ".tmp"


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (the folder entry), where the OS allows opening folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, then fsync and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if os.environ.get(PAUSE_ENV) == path.name:
            logger.warning("%s=%s: pausing before renaming %s", PAUSE_ENV, path.name, temp)
            time.sleep(PAUSE_SECONDS)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files a killed save left behind (they are never a checkpoint)."""
    for temp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        logger.info("removing %s, left by an interrupted save", temp)
        temp.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic, fsynced saves and pickle-safe loads.

    ``preloaded``: a checkpoint already read (by the resume checks) and its path; Lightning's
    load of that path returns it instead of reading the file again.
    """

    def __init__(self, preloaded: Optional[tuple[Path, dict]] = None):
        super().__init__()
        self._preloaded = preloaded

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> dict:
        if self._preloaded is not None and Path(path).resolve() == Path(self._preloaded[0]).resolve():
            checkpoint, self._preloaded = self._preloaded[1], None  # hand it over once, then forget it
            return checkpoint
        return load_checkpoint(path, map_location="cpu")
