"""Acceptance sampling to disk (``scripts/sample.py --acceptance_rate R --classifier C``), resumably.

Same folder layout as :mod:`imagebart.sampling.batch` (settings.json, samples/, tokens.npz,
grid.png, optionally samples.npz), with the candidates instead of the batches as resume markers::

    candidates/class_000003_batch_000001.npz   tokens, scores and classifier verdicts of one candidate batch

Image i carries label ``labels[i]``; for each class the ⌈n_c / rate⌉ candidates are drawn in
batches (batch j of class c seeded from (seed, c, j), :func:`~imagebart.sampling.acceptance.candidate_seed`),
and the n_c best become that class's images, best first, in the order of their positions. A killed
run redraws only the candidate batches whose marker is missing or damaged. When every class is
done, tokens.npz gains the kept ``score`` of each image and settings.json the acceptance
statistics (under ``acceptance``, not compared on resume).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from imagebart.images import atomic_path, image_is_intact, save_image, strict_json
from imagebart.sampling.acceptance import (
    Candidates,
    acceptance_stats,
    candidate_batches,
    candidate_seed,
    candidates_needed,
    check_classifier,
    check_rate,
    class_stats,
    concat,
    draw_candidate_batch,
    image_labels,
    keep_best,
    positions_by_class,
)
from imagebart.sampling.batch import (
    check_or_write_settings,
    drop_stale_markers,
    precision_context,
    record_results,
    write_outputs,
)
from imagebart.sampling.outdir_lock import OutdirLock
from imagebart.util import check_positive_int

logger = logging.getLogger(__name__)


def _marker(folder: Path, label: int, batch: int) -> Path:
    return folder / f"class_{label:06d}_batch_{batch:06d}.npz"


def _read_candidates(path: Path, size: int) -> Optional[Candidates]:
    try:
        with np.load(path) as arrays:
            parts = [torch.from_numpy(arrays[name]) for name in ("tokens", "scores", "correct")]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return Candidates(*parts) if all(len(p) == size for p in parts) else None


def _write_candidates(path: Path, candidates: Candidates) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, tokens=candidates.tokens.numpy(), scores=candidates.scores.numpy(),
                     correct=candidates.correct.numpy())


def run_acceptance_sampling(chain, classifier, outdir, n: int, batch_size: int, seed: int, rate: float,
                            class_label, settings: dict, precision: str = "32", npz: bool = False,
                            progress_for_batch: Optional[Callable] = None, classifier_name: str = "the classifier",
                            **sample_kwargs) -> dict:
    """Draw, score and keep (see the module docstring); returns a summary with the acceptance statistics.

    ``sample_kwargs`` (top_k, temperature, guidance_scale, use_cache) go to :meth:`ImageBARTChain.sample`.
    """
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    rate = check_rate(rate)
    check_classifier(chain, classifier, classifier_name)
    labels = image_labels(chain, class_label, n, seed)  # (n,)
    chain.top_k_schedule(sample_kwargs.get("top_k"))
    chain.temperature_schedule(sample_kwargs.get("temperature", 1.0))
    chain.guidance_schedule(sample_kwargs.get("guidance_scale", 1.0))
    strict_json(settings)
    outdir = Path(outdir)
    plan = positions_by_class(labels)
    n_batches = sum(len(candidate_batches(candidates_needed(len(p), rate), batch_size)) for p in plan.values())
    with OutdirLock(outdir):
        folder, samples_dir = outdir / "candidates", outdir / "samples"
        if not (outdir / "settings.json").is_file() and folder.is_dir():
            drop_stale_markers(folder, "class_*_batch_*.npz")
        resumed = check_or_write_settings(outdir, settings)
        folder.mkdir(parents=True, exist_ok=True)
        samples_dir.mkdir(parents=True, exist_ok=True)
        tokens = np.zeros((n, chain.tokens_per_image), dtype=np.int64)
        scores = np.zeros(n, dtype=np.float32)
        per_class, drawn, index, written = [], 0, 0, 0
        for label, positions in plan.items():
            parts = []
            for j, (start, stop) in enumerate(candidate_batches(candidates_needed(len(positions), rate), batch_size)):
                marker = _marker(folder, label, j)
                part = _read_candidates(marker, stop - start) if marker.is_file() else None
                if part is None:
                    progress = progress_for_batch(index, n_batches) if progress_for_batch is not None else None
                    with precision_context(chain.device, precision):
                        part = draw_candidate_batch(chain, classifier, label, stop - start,
                                                    candidate_seed(seed, label, j), progress=progress,
                                                    **sample_kwargs)
                    _write_candidates(marker, part)
                    drawn += 1
                parts.append(part)
                index += 1
            candidates = concat(parts)
            keep = keep_best(candidates.scores, len(positions))
            tokens[positions.numpy()] = candidates.tokens[keep].numpy()
            scores[positions.numpy()] = candidates.scores[keep].numpy()
            per_class.append(class_stats(label, candidates, keep))
            written += _write_pngs(chain, samples_dir, positions.tolist(), candidates.tokens[keep], batch_size,
                                   rewrite=not resumed)
        stats = acceptance_stats(rate, per_class)
        write_outputs(chain, outdir, n, {"tokens": tokens, "class_label": labels.numpy(), "score": scores}, npz)
        record_results(outdir, {"acceptance": stats})
    summary = {"outdir": str(outdir), "resumed": resumed, "batches_sampled": drawn,
               "batches_already_done": n_batches - drawn, "images_written": written,
               **{k: v for k, v in stats.items() if k != "per_class"}}
    logger.info("%s", summary)
    return summary


def _write_pngs(chain, samples_dir: Path, positions: list, tokens: torch.Tensor, batch_size: int,
                rewrite: bool) -> int:
    """Decode and write the kept images (when resuming, only those whose PNGs are missing or damaged)."""
    todo = [k for k, i in enumerate(positions) if rewrite or not image_is_intact(samples_dir / f"{i:06d}.png")]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images = chain.decode(tokens[chunk]).float().cpu()  # (b, 3, H, W)
        for k, image in zip(chunk, images):
            save_image(image, samples_dir / f"{positions[k]:06d}.png")
    return len(todo)
