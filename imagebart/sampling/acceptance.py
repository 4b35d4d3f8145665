"""Acceptance (rejection) sampling with a classifier, as in the paper's class-conditional ImageNet results.

For every class c that n_c of the requested images carry, draw ⌈n_c / rate⌉ candidates of class c,
score each with the classifier's probability of c, and keep the n_c best (ties: the earlier
candidate). The paper reports FID 21.19 with all samples and 13.12 / 9.77 / 7.44 keeping 50% /
25% / 5%. The classifier is any callable from images (B, 3, H, W) in [-1, 1] to class logits
(B, C) (see :mod:`imagebart.evaluation.classifier`). Candidate batch j of class c draws from its
own generator, seeded from (seed, c, j), so any batch can be redrawn alone (resuming, see
:mod:`imagebart.sampling.acceptance_run`).

Legend: B batch, L tokens per image, C classes, M candidates of one class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from imagebart.sampling.batch import labels_for_batch
from imagebart.util import is_number

Classifier = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Candidates:
    """The scored candidates of one class."""

    tokens: torch.Tensor  # (M, L)
    scores: torch.Tensor  # (M,) classifier probability of the class
    correct: torch.Tensor  # (M,) bool: the classifier's top class is the class


@dataclass
class AcceptanceResult:
    """What :func:`acceptance_sample` returns: the kept images, in the order of the requested labels."""

    tokens: torch.Tensor  # (n, L)
    images: torch.Tensor  # (n, 3, H, W) in [-1, 1]
    class_label: torch.Tensor  # (n,)
    scores: torch.Tensor  # (n,) classifier probability of each image's label
    stats: dict = field(default_factory=dict)  # see :func:`acceptance_stats`


# checks and small pieces


def check_rate(rate, name: str = "acceptance rate") -> float:
    """The acceptance rate: a number in (0, 1] (1 keeps every sample)."""
    if not is_number(rate) or not 0.0 < float(rate) <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1] (0.25 keeps the best quarter), got {rate!r}")
    return float(rate)


def candidates_needed(kept: int, rate: float) -> int:
    """⌈kept / rate⌉ (with a tolerance, so 0.1 of 10 is 100, not 101)."""
    return max(kept, math.ceil(kept / rate - 1e-9))


def check_classifier(chain, classifier: Classifier, name: str = "the classifier") -> None:
    """The classifier must score exactly the chain's classes."""
    if not chain.is_conditional:
        raise ValueError("acceptance sampling needs a class-conditional chain: it keeps the samples a classifier "
                         "finds most typical of their class")
    with torch.no_grad():
        logits = classifier(torch.zeros(1, 3, chain.image_size, chain.image_size, device=chain.device))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] != chain.n_classes:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} returns logits of shape {shape} for one image; the chain has {chain.n_classes} "
                         f"classes, so it must return (1, {chain.n_classes})")


def keep_best(scores: torch.Tensor, kept: int) -> torch.Tensor:
    """Indices of the ``kept`` highest scores, best first; equal scores keep their order."""
    return torch.sort(scores, descending=True, stable=True).indices[:kept]


_CANDIDATE_SALT = 0xACCE  # keeps candidate streams apart from plain sampling's (seed, batch) streams


def candidate_seed(seed: int, label: int, batch: int) -> int:
    """Seed of candidate batch ``batch`` of class ``label``: independent streams, reproducible alone.
    (SeedSequence ignores trailing zeros, so without the salt (seed, c, 0) would equal batch c's (seed, c).)"""
    entropy = [int(seed), _CANDIDATE_SALT, int(label), int(batch)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return int(state >> 1)


def candidate_batches(count: int, batch_size: int) -> list:
    """(start, stop) of each candidate batch of one class."""
    return [(start, min(count, start + batch_size)) for start in range(0, count, batch_size)]


# drawing


@torch.no_grad()
def draw_candidate_batch(chain, classifier: Classifier, label: int, size: int, seed: int,
                         **sample_kwargs) -> Candidates:
    """``size`` samples of class ``label`` and their scores."""
    result = chain.sample(size, class_label=int(label), generator=chain.make_generator(seed), **sample_kwargs)
    probs = classifier(result.images).float().softmax(dim=-1)  # (B, C)
    return Candidates(tokens=result.tokens.cpu(), scores=probs[:, int(label)].cpu(),
                      correct=(probs.argmax(dim=-1) == int(label)).cpu())


def concat(parts: list) -> Candidates:
    return Candidates(*(torch.cat([getattr(p, name) for p in parts]) for name in ("tokens", "scores", "correct")))


def class_stats(label: int, candidates: Candidates, keep: torch.Tensor) -> dict:
    """How one class went: candidates, kept, the lowest kept score, scores and accuracy before / after."""
    kept_scores = candidates.scores[keep]
    return {"class": int(label), "candidates": len(candidates.scores), "kept": len(keep),
            "threshold": float(kept_scores.min()) if len(keep) else None,
            "mean_score_all": float(candidates.scores.mean()), "mean_score_kept": float(kept_scores.mean()),
            "accuracy_all": float(candidates.correct.float().mean()),
            "accuracy_kept": float(candidates.correct[keep].float().mean())}


def acceptance_stats(rate: float, per_class: list) -> dict:
    """Totals over classes (weighted by their counts) plus the per-class records."""
    n_all = sum(c["candidates"] for c in per_class)
    n_kept = sum(c["kept"] for c in per_class)

    def mean(key, weight):
        return sum(c[key] * c[weight] for c in per_class) / max(1, sum(c[weight] for c in per_class))

    return {"rate": rate, "candidates": n_all, "kept": n_kept, "realised_rate": n_kept / max(1, n_all),
            "mean_score_all": mean("mean_score_all", "candidates"), "mean_score_kept": mean("mean_score_kept", "kept"),
            "accuracy_all": mean("accuracy_all", "candidates"), "accuracy_kept": mean("accuracy_kept", "kept"),
            "per_class": per_class}


def image_labels(chain, class_label, n: int, seed: int) -> torch.Tensor:
    """The label of each of the n images (n,): one int, a list cycled over the images, or "random"."""
    return chain.class_tokens(labels_for_batch(class_label, 0, n), n, chain.make_generator(seed)).cpu()


def positions_by_class(labels: torch.Tensor) -> dict:
    """{class: positions (ascending) of the images that carry it}, classes ascending."""
    return {int(c): torch.nonzero(labels == c)[:, 0] for c in torch.unique(labels).tolist()}


@torch.no_grad()
def acceptance_sample(chain, classifier: Classifier, n: int, class_label, rate: float, batch_size: int = 16,
                      seed: int = 0, progress: Optional[Callable[[int, int], None]] = None,
                      **sample_kwargs) -> AcceptanceResult:
    """``n`` images, each the best of its class's candidates (see the module docstring), in memory.

    ``class_label``: one int, a list cycled over the images, or "random" (drawn from ``seed``). ``sample_kwargs``
    go to :meth:`ImageBARTChain.sample` (top_k, temperature, guidance_scale, use_cache).
    ``progress(done, total)`` counts candidate batches.
    """
    rate = check_rate(rate)
    check_classifier(chain, classifier)
    labels = image_labels(chain, class_label, n, seed)  # (n,)
    plan = positions_by_class(labels)
    total = sum(len(candidate_batches(candidates_needed(len(p), rate), batch_size)) for p in plan.values())
    tokens = torch.zeros(n, chain.tokens_per_image, dtype=torch.long)
    scores, per_class, done = torch.zeros(n), [], 0
    for label, positions in plan.items():
        parts = []
        for j, (start, stop) in enumerate(candidate_batches(candidates_needed(len(positions), rate), batch_size)):
            parts.append(draw_candidate_batch(chain, classifier, label, stop - start, candidate_seed(seed, label, j),
                                              **sample_kwargs))
            done += 1
            if progress is not None:
                progress(done, total)
        candidates = concat(parts)
        keep = keep_best(candidates.scores, len(positions))
        tokens[positions], scores[positions] = candidates.tokens[keep], candidates.scores[keep]
        per_class.append(class_stats(label, candidates, keep))
    images = torch.cat([chain.decode(tokens[i:i + batch_size]).float().cpu() for i in range(0, n, batch_size)])
    return AcceptanceResult(tokens=tokens, images=images, class_label=labels, scores=scores,
                            stats=acceptance_stats(rate, per_class))
