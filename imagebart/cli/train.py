"""``main.py``'s command line: the original's options on Lightning 2, then :func:`imagebart.train.train`.

    python main.py --base configs/<dataset>/<config>.yaml [more.yaml ...] -t [--gpus 0,] [key.sub=value ...]

Configs merge left to right, then ``key.sub=value`` overrides apply (anywhere on the line).
:func:`main` takes an argv list and returns the trainer, so tests call it directly; :func:`cli`
is ``main.py``'s body, ending input mistakes with one line instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Optional, Sequence

import pytorch_lightning as pl

from imagebart.callbacks import TrainingStopped
from imagebart.cli.common import configure_logging, run_cli
from imagebart.train import train

PROG = "main.py"
logger = logging.getLogger("imagebart")


# option types


def str2bool(value) -> bool:
    """The original's flags take an optional true/false word (``-t``, ``-t true``, ``-t no``)."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


def int_or_float(value: str) -> int | float:
    """Lightning's ``limit_*_batches`` / ``val_check_interval``: an int count or a float fraction."""
    return float(value) if any(c in value for c in ".eE") else int(value)


# Trainer options accepted as ``--name value`` (Lightning 2 has no add_argparse_args)
TRAINER_OPTIONS: dict[str, Any] = {
    "max_steps": int,
    "max_epochs": int,
    "min_steps": int,
    "min_epochs": int,
    "precision": str,
    "accumulate_grad_batches": int,
    "limit_train_batches": int_or_float,
    "limit_val_batches": int_or_float,
    "limit_test_batches": int_or_float,
    "val_check_interval": int_or_float,
    "check_val_every_n_epoch": int,
    "num_sanity_val_steps": int,
    "log_every_n_steps": int,
    "gradient_clip_val": float,
    "num_nodes": int,
    "accelerator": str,
    "devices": str,
    "strategy": str,
    "benchmark": str2bool,
    "deterministic": str2bool,
    "enable_progress_bar": str2bool,
}


# the parser


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option ends as one line (no usage block), like every other input error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def get_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Train an ImageBART model (or its first stage) from YAML configs. "
        "Extra arguments of the form key.sub=value override config entries.",
    )
    parser.add_argument("-n", "--name", type=str, default="", help="name of the run directory (instead of the config's)")
    parser.add_argument("-r", "--resume", type=str, default="", help="resume from a run directory or a checkpoint in one")
    parser.add_argument("-b", "--base", nargs="*", metavar="config.yaml", default=[],
                        help="configs, merged left to right; then key.sub=value overrides")
    parser.add_argument("-t", "--train", type=str2bool, const=True, default=False, nargs="?", help="train")
    parser.add_argument("--no-test", type=str2bool, const=True, default=False, nargs="?",
                        help="do not run the test split after training")
    parser.add_argument("-p", "--project", help="unused; kept for the original's command lines")
    parser.add_argument("-d", "--debug", type=str2bool, nargs="?", const=True, default=False,
                        help="post-mortem debugger on errors; the run directory moves to debug_runs/")
    parser.add_argument("-s", "--seed", type=int, default=23, help="seed for seed_everything")
    parser.add_argument("-f", "--postfix", type=str, default="", help="appended to the run directory's name")
    parser.add_argument("-l", "--logdir", type=str, default="logs", help="where run directories go")
    parser.add_argument("--scale_lr", type=str2bool, nargs="?", const=True, default=True,
                        help="lr = base_learning_rate * batch_size * accumulate_grad_batches * devices * nodes")
    parser.add_argument("--ignore_checkpoint_record", action="store_true",
                        help="-r: resume even though the run's config now builds another model than the checkpoint "
                             "records (e.g. an edited schedule), or its weights' digest does not match")
    parser.add_argument("--gpus", type=str, default=None,
                        help="the original's GPU list: '0,' = GPU 0, '0,1' = GPUs 0 and 1 (DDP); absent = CPU")
    trainer = parser.add_argument_group("Lightning Trainer options")
    for name, kind in TRAINER_OPTIONS.items():
        trainer.add_argument(f"--{name}", type=kind, default=None)
    return parser


# running


def parse_options(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """The options and the config overrides (``key.sub=value`` items and unknown options, which
    the config merge then names)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # key=value overrides may stand anywhere, even right after a bare -t
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    opt, unknown = get_parser().parse_known_args([a for a in argv if a not in overrides])
    opt.trainer_options = {name: getattr(opt, name) for name in TRAINER_OPTIONS if getattr(opt, name) is not None}
    return opt, unknown + overrides


def main(argv: Optional[Sequence[str]] = None) -> pl.Trainer:
    """Parse ``argv``, build everything and train / test; returns the trainer."""
    configure_logging()
    opt, overrides = parse_options(argv)
    return train(opt, overrides)


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """``main.py``'s body: input mistakes end with one ``main.py: error: ...`` line and exit code 2
    (``-d`` shows the traceback instead); a run stopped by a signal exits with 128 + its number
    once ``last.ckpt`` is saved."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "-d" in args or "--debug" in args

    def body() -> int:
        try:
            main(args)
        except TrainingStopped as stopped:
            logger.warning("%s", stopped)
            return stopped.exit_code
        return 0

    return run_cli(PROG, body, debug=debug, extra_errors=(KeyError,), hint=" (run with -d for the full traceback)")
