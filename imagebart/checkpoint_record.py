"""What our checkpoints record about themselves, and the checks that use it.

Every checkpoint we write carries ``checkpoint["imagebart"] = {"hparams": {...}, "sha256": "..."}``:
the hyper-parameters that fix what the weights mean (which scale t of how many, the schedule ᾱ,
the codebook size and grid, the network's architecture) and a digest of the state dict. Loading
recomputes the digest, so bytes flipped on disk are refused instead of sampled from, and compares
the hyper-parameters with what the user's config builds, so a scale-2 checkpoint listed as scale 1,
or a resume after the schedule was edited, is named instead of silently used.
Checkpoints without a record (the original release's, ours from before records) load unchecked.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional

import torch

RECORD_KEY = "imagebart"


class CheckpointMismatch(ValueError):
    """A checkpoint is corrupt, or was written for another model than the config describes."""


def _plain(value: Any) -> Any:
    """JSON-normal form, so records compare equal whatever containers and number types built them."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            flat = tensor.cpu().contiguous().reshape(-1).view(torch.uint8)  # the raw bytes, any dtype
            digest.update(memoryview(flat.numpy()))
    return digest.hexdigest()


def make_record(state_dict: Mapping[str, torch.Tensor], hparams: Optional[Mapping[str, Any]] = None) -> dict:
    """The entry stored under ``checkpoint["imagebart"]``."""
    return {"hparams": None if hparams is None else _plain(hparams), "sha256": state_dict_sha256(state_dict)}


def verify_digest(record: Optional[Mapping], state_dict: Mapping[str, torch.Tensor], source) -> None:
    """Refuse weights that are not the ones the checkpoint was written with."""
    if not record or not record.get("sha256"):
        return
    if state_dict_sha256(state_dict) != record["sha256"]:
        raise CheckpointMismatch(
            f"checkpoint {source} is corrupt: its weights differ from the ones it was written with (sha256 "
            "mismatch); copy or download it again (a checkpoint you edited on purpose can be re-recorded with "
            "scripts/convert_checkpoint.py)")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``network.params.dec_depth``), so a difference names one setting."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    out = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differences(recorded: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """``"key: checkpoint X, config Y"`` for every (dotted) hyper-parameter that differs."""
    recorded, expected = _flat(_plain(recorded)), _flat(_plain(expected))
    return [f"{key}: checkpoint {recorded.get(key)!r}, config {expected.get(key)!r}"
            for key in sorted(set(recorded) | set(expected)) if recorded.get(key) != expected.get(key)]


def check_hparams(record: Optional[Mapping], expected: Mapping[str, Any], source, config_source: str,
                  override_hint: str) -> None:
    """Refuse a checkpoint whose recorded hyper-parameters differ from those the config builds."""
    if not record or not record.get("hparams"):
        return
    found = differences(record["hparams"], expected)
    if found:
        raise CheckpointMismatch(f"checkpoint {source} was written for another model than {config_source} builds "
                                 f"({'; '.join(found)}); {override_hint}")
