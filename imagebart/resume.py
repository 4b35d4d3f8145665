"""``main.py -r``: find the checkpoint, read it safely and check it before the trainer exists.

Every way a resume can fail is named here in one line, with the file and what to do: a path that
is no run directory, a checkpoint that is empty, truncated, pickles code, is no Lightning training
checkpoint (a VQGAN's weights, a plain state dict), holds another architecture's weights, or was
written for another model than the run's (edited) config builds.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

from imagebart.checkpoint_io import load_checkpoint
from imagebart.checkpoint_record import RECORD_KEY, CheckpointMismatch, check_hparams, verify_digest
from imagebart.config import ConfigError

# what Lightning 2 needs to continue a run (weights, optimizer, loop progress)
TRAINING_STATE_KEYS = ("state_dict", "optimizer_states", "loops", "global_step")
IGNORE_RECORD_HINT = ("resume with the config it was trained with, or pass --ignore_checkpoint_record to "
                      "main.py to resume with the edited one anyway")


def resolve_resume(resume: str) -> tuple[Path, Path]:
    """``-r`` names a run directory or a checkpoint inside ``<run>/checkpoints/``."""
    path = Path(resume)
    if not path.exists():
        raise ConfigError(f"--resume {resume}: no such run directory or checkpoint")
    if path.is_file():
        if path.parent.name != "checkpoints":
            raise ConfigError(f"--resume {resume}: expected a run directory, or a checkpoint inside "
                              "<run dir>/checkpoints/")
        return path.parent.parent, path
    ckpt = path / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise ConfigError(f"--resume {resume}: the run directory has no checkpoints/last.ckpt "
                          "(expected a directory written by main.py -t)")
    return path, ckpt


def read_resume_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, read without running pickled code; it must be a Lightning
    training checkpoint (weights, optimizer state, loop progress)."""
    try:
        checkpoint = load_checkpoint(path)
    except pickle.UnpicklingError as err:  # checkpoint_io.UnsafeCheckpointError and relatives
        raise ConfigError(f"--resume: {err}") from None
    except ValueError as err:  # checkpoint_io.CheckpointReadError names the file and what is wrong
        raise ConfigError(f"--resume: {err}") from None
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"--resume: cannot read checkpoint {str(path)!r}: {err}") from None
    missing = [k for k in TRAINING_STATE_KEYS if not isinstance(checkpoint, Mapping) or k not in checkpoint]
    if missing:
        raise ConfigError(
            f"--resume: {str(path)!r} is not a Lightning training checkpoint written by main.py -t "
            f"(it lacks {missing}); to start a new run from its weights, pass it as "
            "model.params.ckpt_path=<file> with --base instead of -r")
    return checkpoint


def _differences(theirs: Mapping[str, Any], ours: Mapping[str, Any], n_show: int = 3) -> list[str]:
    """Missing / unexpected / reshaped state-dict entries, the first few of each."""
    found = []
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    reshaped = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs config {tuple(ours[k].shape)}"
                for k in ours if k in theirs and hasattr(theirs[k], "shape")
                and tuple(theirs[k].shape) != tuple(ours[k].shape)]
    for label, names in (("missing", missing), ("unexpected", unexpected), ("other shapes", reshaped)):
        if names:
            more = f" and {len(names) - n_show} more" if len(names) > n_show else ""
            found.append(f"{len(names)} {label}: {', '.join(names[:n_show])}{more}")
    return found


def check_checkpoint_fits(model, checkpoint: Mapping, path: Path, check_record: bool = True) -> None:
    """The checkpoint must hold this model's weights, intact, and (when ``check_record``) have been
    written for the model the config builds (the record of :mod:`imagebart.checkpoint_record`)."""
    record = checkpoint.get(RECORD_KEY) if check_record else None
    try:
        if record:
            verify_digest(record, checkpoint["state_dict"], path)
            if hasattr(model, "hparams_record"):
                check_hparams(record, model.hparams_record(), path, "the run's config", IGNORE_RECORD_HINT)
    except CheckpointMismatch as err:
        raise ConfigError(f"--resume: {err}") from None
    found = _differences(checkpoint["state_dict"], model.state_dict())
    if found:
        raise ConfigError(
            f"--resume: {str(path)!r} holds the weights of another architecture than the run's config builds "
            f"({'; '.join(found)}); resume with the config it was trained with")
