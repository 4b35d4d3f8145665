"""``scripts/sample.py``: sample a chain into a folder, resumably (see :mod:`imagebart.sampling.batch`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from imagebart.cli.common import (
    HelpFormatter,
    add_checkpoint_record_argument,
    add_decoding_arguments,
    add_guidance_argument,
    add_threads_argument,
    apply_decoding_options,
    apply_threads,
    check_outdir,
    parse_gamma,
    parse_guidance_scale,
    parse_class_label,
    per_scale_option,
    resolve_device,
    run_command,
)
from imagebart.sampling.batch import (PRECISIONS, argument_settings, check_settings_early, run_sampling,
                                     sampling_settings)

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/sample.py",
        description="Sample images from a chain of ImageBART scales (sampling config: checkpoints + configs, "
                    "scale 1 first) into --outdir; re-running the same command resumes an interrupted run, and "
                    "re-running it with a larger -n adds images to it.",
        formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="sampling config YAML (e.g. configs/sampling/demo.yaml)")
    parser.add_argument("-n", "--n_samples", type=int, default=16, help="number of images")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="batch k is seeded from (seed, k)")
    parser.add_argument("--top_k", default=None,
                        help="one value or one per scale, comma-separated, in sampling order (scale T first); "
                             "None: each scale config's top_k")
    parser.add_argument("--temperature", default="1.0",
                        help="one value or one per scale, comma-separated, in sampling order (scale T first)")
    parser.add_argument("--class_label", default=None,
                        help="class-conditional chains: an int, a comma-separated list (cycled over the images), "
                             "'random', or 'balanced' (image i gets class i mod C)")
    parser.add_argument("--caption", action="append", default=None,
                        help="text-conditional chains: the caption; repeat the option for several (cycled over "
                             "the images)")
    add_guidance_argument(parser)
    add_decoding_arguments(parser)
    parser.add_argument("--outdir", default="samples", help="output folder")
    parser.add_argument("--device", default=None, help="torch device (None: cuda if available, else cpu)")
    add_threads_argument(parser)
    parser.add_argument("--precision", default="32", choices=PRECISIONS,
                        help="32 (float32), bf16 (autocast, CUDA or CPU) or 16 (float16 autocast, CUDA only)")
    parser.add_argument("--offload", action="store_true",
                        help="keep the scales not being run on the CPU (saves accelerator memory)")
    parser.add_argument("--no_ema", action="store_true", help="sample with the raw instead of the EMA weights")
    parser.add_argument("--acceptance_rate", type=float, default=None,
                        help="acceptance sampling: draw n_c/rate samples per class and keep the n_c that --classifier "
                             "scores highest for their label (0.25 keeps the best quarter); needs --classifier")
    parser.add_argument("--classifier", default=None,
                        help="for --acceptance_rate: 'demo' (the demo feature network) or a classifier YAML "
                             "(target, params, ckpt_path, ...; see imagebart/evaluation/classifier.py)")
    parser.add_argument("--save_chain", action="store_true",
                        help="also write chains/<index>.png: each image's x_T -> ... -> x_0, decoded, in one row")
    parser.add_argument("--grid_scale", type=int, default=None,
                        help="upscale grid.png (and the chain rows) this many times with nearest neighbours; "
                             "None: small images up to about 96 pixels")
    parser.add_argument("--npz", action="store_true",
                        help="also write samples.npz for the ADM evaluation suite (uint8 NHWC arr_0, labels arr_1)")
    add_checkpoint_record_argument(parser)
    parser.add_argument("--no_cache", action="store_true",
                        help="re-run the full prefix at every token (the original's slow sampler)")
    return parser


def tqdm_progress(index: int, n_batches: int):
    """A ``progress(t, step, steps)`` callback for batch ``index``: one tqdm bar per scale on stderr."""
    from tqdm import tqdm

    bars = {}

    def progress(t: int, step: int, steps: int) -> None:
        if t not in bars:
            bars[t] = tqdm(total=steps, desc=f"batch {index + 1}/{n_batches}, scale {t}", leave=False,
                           unit="tok", file=sys.stderr)
        bars[t].update(step - bars[t].n)
        if step >= steps:
            bars.pop(t).close()

    return progress


def run(args: argparse.Namespace) -> dict:
    """Check the arguments, load the chain and sample; returns :func:`run_sampling`'s summary."""
    from imagebart.evaluation.classifier import load_classifier
    from imagebart.sampling.acceptance import check_rate
    from imagebart.sampling.acceptance_run import run_acceptance_sampling
    from imagebart.sampling.chain import ImageBARTChain
    from imagebart.sampling.config import load_sampling_config

    if args.n_samples < 1 or args.batch_size < 1:
        raise ValueError(f"-n and --batch_size must be >= 1, got {args.n_samples} and {args.batch_size}")
    top_k = per_scale_option(args.top_k, "--top_k", integer=True)
    temperature = per_scale_option(args.temperature, "--temperature")
    if temperature is None:
        raise ValueError("--temperature needs a number (or one per scale)")
    class_label = parse_class_label(args.class_label)
    guidance_scale = parse_guidance_scale(args.guidance_scale)
    gamma = parse_gamma(args)
    if (args.acceptance_rate is None) != (args.classifier is None):
        raise ValueError("--acceptance_rate and --classifier go together: the classifier scores the samples the "
                         "rate selects from")
    if args.acceptance_rate is not None:
        check_rate(args.acceptance_rate, "--acceptance_rate")
        if args.save_chain:
            raise ValueError("--save_chain writes the chains of every image drawn; with --acceptance_rate most are "
                             "dropped: sample without it, or leave out --save_chain")
    device = resolve_device(args.device)
    apply_threads(args.threads)
    if args.precision == "16" and device.type != "cuda":
        raise ValueError(f"--precision 16 needs a CUDA device (got {device}); use 32 or bf16")
    if args.grid_scale is not None and args.grid_scale < 1:
        raise ValueError(f"--grid_scale must be >= 1, got {args.grid_scale}")
    check_outdir(args.outdir)
    paths = load_sampling_config(args.config)
    caption = None if args.caption is None else (args.caption[0] if len(args.caption) == 1 else args.caption)
    check_settings_early(args.outdir, argument_settings(  # before loading anything
        paths, args.n_samples, args.batch_size, args.seed, device.type, args.precision, not args.no_cache,
        not args.no_ema, args.offload, caption), grows=args.acceptance_rate is None)
    classifier = None if args.classifier is None else load_classifier(args.classifier, device)
    chain = ImageBARTChain.from_sampling_config(paths, device=device, ema=not args.no_ema, offload=args.offload,
                                                strict=not args.ignore_checkpoint_record)
    apply_decoding_options(chain, args)
    if caption is None and chain.is_text_conditional:
        raise ValueError('the chain is text-conditional: pass --caption "..." (repeat it for several captions)')
    if class_label is None and chain.is_conditional:
        raise ValueError(f"the chain is class-conditional: pass --class_label (0..{chain.n_classes - 1}, "
                         "a comma-separated list, random or balanced)")
    settings = sampling_settings(chain, paths, args.n_samples, args.batch_size, args.seed, top_k, temperature,
                                 class_label, args.precision, not args.no_cache, not args.no_ema, args.offload,
                                 guidance_scale, caption, gamma)
    labels = balanced_labels(chain, class_label, args.n_samples)
    if classifier is not None:
        settings.update(acceptance_rate=args.acceptance_rate, classifier=args.classifier)
        return run_acceptance_sampling(chain, classifier, args.outdir, args.n_samples, args.batch_size, args.seed,
                                       args.acceptance_rate, labels, settings, precision=args.precision,
                                       npz=args.npz, progress_for_batch=tqdm_progress,
                                       classifier_name=f"--classifier {args.classifier}", top_k=top_k,
                                       temperature=temperature, guidance_scale=guidance_scale,
                                       use_cache=not args.no_cache, gamma=gamma)
    return run_sampling(chain, args.outdir, args.n_samples, args.batch_size, args.seed, top_k=top_k,
                        temperature=temperature, guidance_scale=guidance_scale, class_label=labels, caption=caption,
                        precision=args.precision, use_cache=not args.no_cache, settings=settings,
                        progress_for_batch=tqdm_progress, npz=args.npz, gamma=gamma, save_chain=args.save_chain,
                        grid_scale=args.grid_scale)


def balanced_labels(chain, class_label, n: int):
    """``balanced``: image i gets class i mod C, so n = k*C samples hold k of every class (and any
    resumed batch gets the same labels)."""
    if class_label != "balanced":
        return class_label
    if not chain.is_conditional:
        raise ValueError("--class_label balanced needs a class-conditional chain")
    classes = chain.n_classes
    if n % classes:
        raise ValueError(f"--class_label balanced: -n {n} is not a multiple of the {classes} classes; use e.g. "
                         f"-n {max(1, n // classes) * classes}")
    return list(range(classes))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, summary = run_command(get_parser, run, argv)
    logger.info("wrote %d images to %s (%d batches sampled, %d already done)", summary["images_written"],
                Path(args.outdir) / "samples", summary["batches_sampled"], summary["batches_already_done"])
    if "realised_rate" in summary:
        logger.info("acceptance: kept %d of %d candidates; mean classifier score %.3f -> %.3f, accuracy %.3f -> %.3f "
                    "(all -> kept; per class in settings.json)", summary["kept"], summary["candidates"],
                    summary["mean_score_all"], summary["mean_score_kept"], summary["accuracy_all"],
                    summary["accuracy_kept"])
    return 0
