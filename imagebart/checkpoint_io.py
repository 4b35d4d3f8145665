"""Safe checkpoint loading: tensors and plain containers only, never arbitrary unpickling.

``torch.load(..., weights_only=True)`` refuses every pickled class that torch does not know.
Official checkpoints written by Lightning 1.x also pickle some harmless metadata beside the
weights (callback classes used as dict keys, OmegaConf hyper-parameters, ``pathlib`` paths,
numpy scalars). For those, and only for globals from the packages in
:data:`METADATA_PACKAGES` (plus plain builtin types such as ``int``), we substitute inert
stand-ins (:class:`OpaqueObject`) that store what they are given and run no code of the
original class. Any other global (``os.system``, ``builtins.eval``, a user class) makes loading
fail with an error naming the file. A file that is not a torch checkpoint at all (empty, truncated by
an interrupted download or save, random bytes) raises :class:`CheckpointReadError`, one line naming
the file and what is wrong with it.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

logger = logging.getLogger(__name__)

# top-level packages whose pickled globals may be replaced by inert stand-ins
METADATA_PACKAGES = frozenset(
    {
        "pytorch_lightning",
        "lightning",
        "lightning_fabric",
        "omegaconf",
        "numpy",
        "pathlib",
        "typing",
        "collections",
        "argparse",
    }
)

# pickled dict subclasses: must come back as real dicts (the unpickler fills them item by item)
_DICT_LIKE = frozenset(
    {
        "collections.defaultdict",
        "pytorch_lightning.utilities.parsing.AttributeDict",
        "lightning.fabric.utilities.data.AttributeDict",
        "lightning_fabric.utilities.data.AttributeDict",
    }
)


# plain builtin types (OmegaConf pickles them as type annotations): allowed as themselves
_SAFE_BUILTINS = {
    f"builtins.{t.__name__}": t
    for t in (dict, list, tuple, set, frozenset, int, float, complex, str, bytes, bool)
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint pickles code that we refuse to run."""


class CheckpointReadError(ValueError):
    """A file given as a checkpoint cannot be read as one (empty, truncated, not written by torch.save)."""


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format starts with a zip entry
PICKLE_PROTO = b"\x80"  # a pickle (torch's legacy format) starts with its PROTO opcode


# inert stand-ins


class OpaqueObject:
    """Stand-in for a pickled metadata object: keeps its constructor args and state, runs nothing."""

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"OpaqueObject({self.pickled_name})"


class _DictStandIn:
    """Stand-in for a pickled dict subclass: becomes a plain dict."""

    def __new__(cls, *args, **kwargs):
        return {}


def _stand_in(name: str):
    if name in _SAFE_BUILTINS:
        return _SAFE_BUILTINS[name]
    if name in _DICT_LIKE:
        return type(f"DictStandIn[{name}]", (_DictStandIn,), {})
    return type(f"Opaque[{name}]", (OpaqueObject,), {"pickled_name": name})


def _is_metadata_global(name: str) -> bool:
    return name in _SAFE_BUILTINS or name.split(".", 1)[0] in METADATA_PACKAGES


# loading


def _first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an error (torch's read errors run over several paragraphs)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    telling = [line for line in lines if "GLOBAL" in line or "WeightsUnpickler error" in line]  # the refused global
    text = (telling or lines or [type(err).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unreadable(path: Path, err: BaseException) -> CheckpointReadError:
    """Say what is wrong with a file torch cannot read, judged from its size and first bytes."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(4)
    if size == 0:
        what = "the file is empty (0 bytes)"
    elif head == ZIP_MAGIC:
        what = f"it is a damaged or truncated torch.save archive ({size:,} bytes; {_first_line(err)})"
    else:
        what = f"it is not a file written by torch.save ({size:,} bytes starting {head!r}; {_first_line(err)})"
    return CheckpointReadError(f"cannot read checkpoint {str(path)!r}: {what}. Download or save it again "
                               "(an interrupted copy or save truncates it)")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load a ``torch.save`` file without executing pickled code.

    Plain tensor files load directly; Lightning 1.x metadata comes back as :class:`OpaqueObject`
    stand-ins (the tensors and plain containers are intact). Raises ``FileNotFoundError`` for a
    missing file, :class:`CheckpointReadError` for a file that is no readable checkpoint and
    :class:`UnsafeCheckpointError` when the file pickles anything else.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointReadError(f"checkpoint {str(path)!r} is a folder; expected a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first_error = err
    except Exception as err:  # noqa: BLE001 - torch raises anything from EOFError to IndexError on garbage
        raise _unreadable(path, err) from err

    with open(path, "rb") as handle:
        pickled = handle.read(1) == PICKLE_PROTO
    if not zipfile.is_zipfile(path) and not pickled:
        raise _unreadable(path, first_error)  # random bytes can look like a bad pickle opcode
    if not zipfile.is_zipfile(path):
        # the legacy (non-zip) format cannot be inspected without unpickling: refuse, naming why
        raise UnsafeCheckpointError(
            f"refusing to load checkpoint {str(path)!r}: it is not loadable with weights_only=True "
            f"({_first_line(first_error)}) and, not being a zip archive, its pickled globals cannot be "
            "inspected. Re-save its state_dict in a trusted environment with torch.save({'state_dict': sd}, path)."
        )
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - a damaged archive fails here in many ways
        raise _unreadable(path, err) from err
    refused = sorted(n for n in names if not _is_metadata_global(n))
    if refused:
        raise UnsafeCheckpointError(
            f"refusing to load checkpoint {str(path)!r}: it pickles {refused}, which are neither "
            "tensors nor known checkpoint metadata (packages "
            f"{sorted(METADATA_PACKAGES)}); loading it could run arbitrary code"
        )
    logger.info("loading %s with inert stand-ins for %s", path, sorted(names))
    stand_ins = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"cannot load checkpoint {str(path)!r} safely: {_first_line(err)}"
        ) from err
    except Exception as err:  # noqa: BLE001 - see above
        raise _unreadable(path, err) from err


def load_state_dict(path: str | Path, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in ``path``: a plain state dict file or a checkpoint with ``state_dict``."""
    ckpt = load_checkpoint(path, map_location=map_location)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(sd, Mapping) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(
            f"checkpoint {str(path)!r} holds neither a state dict nor a dict with a 'state_dict' "
            "entry of tensors"
        )
    return dict(sd)


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Entries of ``state_dict`` under ``prefix`` (e.g. ``"first_stage_model."``), prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_state_dict_checked(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    hint: str = "",
    n_show: int = 5,
) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with ONE readable error.

    The error names ``source`` (the file), the first mismatching keys with both shapes, missing
    and unexpected keys, and ``hint`` (which config keys to check).
    """
    own = module.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if not (mismatched or missing or unexpected):
        module.load_state_dict(state_dict, strict=True)
        return
    parts = [f"checkpoint {source!r} does not fit the model built from the config"]
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches, first: " + "; ".join(mismatched[:n_show]))
    if missing:
        parts.append(f"{len(missing)} keys missing from the checkpoint, first: {missing[:n_show]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:n_show]}")
    if hint:
        parts.append(hint)
    raise ValueError(". ".join(parts))
