"""What every command line shares: per-scale values, class labels, device, logging, errors.

Per-scale values are written the same way on every command line and in the apps: one number,
or a comma-separated list with one number per scale in SAMPLING order (scale T first). Range
checks (top-k >= 1, temperature > 0, ...) stay with the chain, which knows T and K.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from imagebart.checkpoint_io import UnsafeCheckpointError
from imagebart.config import ConfigError
from imagebart.util import default_device

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
NONE_WORDS = ("none", "config")  # "use the config's value" in a per-scale list
# the user's mistake, not a bug (CheckpointReadError, SettingsMismatch, ResultWriteError ... are ValueErrors)
INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, ConfigError, UnsafeCheckpointError)
EXIT_USAGE = 2  # argparse's exit code for bad input, used for every input error
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


# per-scale values


def parse_number(item: str, name: str, integer: bool = False, text: Optional[str] = None):
    """One finite number (a whole one if ``integer``); the message names ``name`` and the bad entry."""
    source = item if text is None else text
    try:
        value = float(item)
    except ValueError:
        raise ValueError(f"{name}: cannot read {source!r}: {item!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: cannot read {source!r}: {item!r} is not a finite number")
    if not integer:
        return value
    if not value.is_integer():
        raise ValueError(f"{name}: cannot read {source!r}: {item!r} is not a whole number")
    try:
        return int(item)  # exact, also beyond float precision
    except ValueError:
        return int(value)  # "5.0", "1e3"


def parse_scale_values(text: str, name: str, integer: bool = False, allow_none: bool = False) -> list:
    """``"10, 20,30"`` -> [10, 20, 30]; with ``allow_none``, ``none``/``config`` entries become None."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: enter one number per scale, separated by commas")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError(f"{name}: empty entry in {text!r} (separate the values by single commas)")
    return [None if allow_none and item.lower() in NONE_WORDS else parse_number(item, name, integer, text)
            for item in items]


def per_scale_option(text: Optional[str], name: str, integer: bool = False):
    """A command-line schedule: absent -> None (the config's value), one value -> that value for
    every scale, several -> one per scale (scale T first)."""
    if text is None:
        return None
    values = parse_scale_values(text, name, integer, allow_none=True)
    return values[0] if len(values) == 1 else values


def parse_class_label(text: Optional[str]):
    """``"3"`` -> 3, ``"1,2,3"`` -> [1, 2, 3] (cycled over the images), ``"random"``,
    ``"balanced"`` (every class equally often, for FID on class-conditional models), or None."""
    if text is None:
        return None
    if text.strip().lower() in ("random", "balanced"):
        return text.strip().lower()
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"--class_label: expected an int, a comma-separated list of ints, 'random' or "
                         f"'balanced', got {text!r}") from None
    return values[0] if len(values) == 1 else values


# device


def resolve_device(name: Optional[str]) -> torch.device:
    """``--device``: None -> :func:`imagebart.util.default_device`; a device this machine lacks is
    an input error here, before any model is loaded."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {name}: not a torch device ({err}); use e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: expected cpu, cuda[:index] or mps")
    return device


# output folders


def check_outdir(path, name: str = "--outdir") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path}: is a file; expected a folder (created when missing)")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name} {path}: cannot create the folder, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path}: {existing} is not writable (read-only folder or file system); "
                         "choose another folder")
    return path


def make_outdir(path, name: str = "--outdir") -> Path:
    """Create the output folder, or say in one line why it cannot be."""
    path = check_outdir(path, name)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{name} {path}: cannot create the folder ({err.strerror or err})") from None
    return path


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that keeps the description's line breaks and shows every option's default."""


# logging and errors


def configure_logging(level: int = logging.INFO) -> None:
    """INFO lines from the package on stderr; leaves handlers someone else installed (pytest, a
    notebook) alone."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("imagebart").setLevel(level)


def error_message(err: BaseException) -> str:
    """The text of an error on one line (a KeyError's str() would add quotes around it)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


def run_cli(prog: str, body: Callable[[], Any], debug: bool = False, extra_errors: tuple = (),
            hint: str = "") -> Any:
    """Run a command's body: input errors end as one ``<prog>: error: <message>`` line on stderr
    and exit code 2 (as argparse does for bad arguments), Ctrl-C as one line and 130; no
    traceback unless ``debug``. Returns what ``body`` returns."""
    try:
        return body()
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{prog}: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except INPUT_ERRORS + tuple(extra_errors) as err:
        if debug:
            raise
        sys.stderr.write(f"{prog}: error: {error_message(err)}{hint}\n")
        raise SystemExit(EXIT_USAGE) from None


def run_command(get_parser: Callable[[], Any], run: Callable[[Any], Any], argv=None) -> tuple:
    """A command's whole ``main``: parse ``argv``, set up logging, run ``run(args)`` under
    :func:`run_cli`; returns ``(args, what run returned)``."""
    parser = get_parser()
    args = parser.parse_args(argv)
    configure_logging()
    return args, run_cli(parser.prog, lambda: run(args))


def add_checkpoint_record_argument(parser) -> None:
    """``--ignore_checkpoint_record``: load checkpoints whose record does not match, with a warning."""
    parser.add_argument("--ignore_checkpoint_record", action="store_true",
                        help="load checkpoints whose recorded digest or hyper-parameters do not match their config "
                             "(a warning instead of an error; see README, When things go wrong)")


def add_guidance_argument(parser) -> None:
    """``--guidance_scale``: classifier-free guidance per scale (chains trained with ``cond_drop_prob``)."""
    parser.add_argument("--guidance_scale", default="1.0",
                        help="classifier-free guidance l_u + s*(l_c - l_u), one value or one per scale in sampling "
                             "order (scale T first); 1 = plain conditional sampling, 0 = unconditional; needs a "
                             "class-conditional chain trained with cond_drop_prob")


def parse_guidance_scale(text: str):
    """The ``--guidance_scale`` value(s): one number or a list, each checked by the chain."""
    value = per_scale_option(text, "--guidance_scale")
    if value is None:
        raise ValueError("--guidance_scale needs a number (or one per scale)")
    return value


def add_threads_argument(parser) -> None:
    """``--threads``: torch's CPU threads (over-subscribed cores make sampling many times slower)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (None: torch's own choice, the physical cores); beside a "
                             "training run on the same cores, give each about half")


def apply_threads(threads) -> None:
    """Set torch's CPU threads from ``--threads`` (None: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def docstring_epilog(doc: str) -> str:
    """A command's docstring without its first line, which is already the parser's description."""
    return "\n".join(doc.splitlines()[1:]).strip()


def add_decoding_arguments(parser) -> None:
    """``--gamma`` / ``--no_speculative``: how many x_t drafts a decoder pass verifies (exact either way)."""
    parser.add_argument("--gamma", default=None,
                        help="x_t drafts each decoder pass verifies on encoder-decoder scales (exact speculative "
                             "decoding), one value or one per scale in sampling order; None: 6")
    parser.add_argument("--no_speculative", action="store_true",
                        help="decode token by token (gamma 0): each image's draws then do not depend on the "
                             "other images of its batch")
    parser.add_argument("--quantize", default=None, choices=("int8",),
                        help="CPU only: dynamic int8 linear layers (faster, not exact; see README)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the decode step (CUDA graphs on a GPU): the same tokens; each scale "
                             "first compiles for a while (tens of seconds on a CPU), so it pays off for long runs")


def apply_decoding_options(chain, args) -> None:
    """``--quantize`` and ``--compile`` on a loaded chain (:func:`parse_gamma` has checked them)."""
    from imagebart.sampling.quantize import quantize_chain

    quantize_chain(chain, args.quantize)
    if args.compile:
        chain.compile_decoding()


def parse_gamma(args):
    """The chain's ``gamma`` from ``--gamma`` / ``--no_speculative`` (None: each scale's default); also
    refuses decoding options that exclude each other, before anything is loaded."""
    if args.quantize and args.compile:
        raise ValueError("--quantize and --compile do not go together: pick one")
    if args.no_speculative:
        if args.gamma is not None:
            raise ValueError("--gamma and --no_speculative contradict each other; pass one")
        return 0
    return per_scale_option(args.gamma, "--gamma", integer=True)


def add_table_arguments(parser, guidance_scales: str) -> None:
    """The options every measurement table shares: guidance scales, batching, seed, device, output."""
    parser.add_argument("--guidance_scales", default=guidance_scales, help="comma-separated guidance scales")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="write the rows as JSON here (and a markdown table beside it)")


def write_table(out, args, rows: list, markdown: str) -> None:
    """``out`` (JSON: the settings and the rows) and the markdown table beside it (``.md``)."""
    import json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
