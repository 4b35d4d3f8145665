"""Sample-quality metrics on feature vectors: FID, KID, IS (torchmetrics) and precision / recall.

Features are computed once by a feature network (:mod:`imagebart.evaluation.features`), then the
maths runs here. FID, KID and IS are torchmetrics' metrics: a pass-through module stands in for
their Inception network, so they receive our features as they are. Improved precision / recall
(Kynkäänniemi et al., 2019: k-NN manifolds of the real and generated features, k = 3) is not in
torchmetrics, and torch-fidelity (which has it) cannot be imported without torchvision, so it is
written out below in a few lines.

Reference statistics (:class:`ReferenceStats`) hold the mean and covariance of the reference
features (for FID on any number of images) and up to ``max_features`` of the features themselves
(for KID and precision / recall).

Legend: N / M reference / generated samples, D feature width, C classes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

STATS_FORMAT = 1

# torchmetrics warns that KID and IS keep every feature in memory: that is what we hand them
warnings.filterwarnings("ignore", message=r"Metric `(Kernel Inception Distance|InceptionScore)` will save all")


class _GivenFeatures(nn.Module):
    """torchmetrics' feature-network slot, filled with features we computed ourselves."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _as_features(features, name: str) -> torch.Tensor:
    features = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if features.ndim != 2 or not features.shape[0] or not features.shape[1]:
        raise ValueError(f"{name} must be a (samples, features) array, got shape {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return features.double()


# reference statistics


@dataclass
class ReferenceStats:
    """What a reference set contributes: mean (D,), covariance (D, D), count, and some features (K, D)."""

    mean: np.ndarray
    cov: np.ndarray
    n: int
    features: np.ndarray
    feature_name: str = "unknown"

    @classmethod
    def from_features(cls, features, feature_name: str = "unknown", max_features: int = 10000,
                      seed: int = 0) -> "ReferenceStats":
        feats = _as_features(features, "reference features").numpy()
        if feats.shape[0] < 2:
            raise ValueError(f"reference statistics need at least 2 images, got {feats.shape[0]}")
        kept = feats
        if feats.shape[0] > max_features:
            kept = feats[np.random.default_rng(seed).choice(feats.shape[0], max_features, replace=False)]
        return cls(mean=feats.mean(0), cov=np.cov(feats, rowvar=False), n=feats.shape[0], features=kept,
                   feature_name=feature_name)

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, mu=self.mean, sigma=self.cov, n=self.n, features=self.features,
                 feature_name=self.feature_name, format=STATS_FORMAT)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ReferenceStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reference statistics file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("mu", "sigma", "n", "features") if k not in data]
                if missing:
                    raise ValueError(f"{path} is not a reference statistics file (no {missing}); write one with "
                                     "scripts/evaluate.py --save_reference_stats")
                return cls(mean=data["mu"], cov=data["sigma"], n=int(data["n"]), features=data["features"],
                           feature_name=str(data["feature_name"]) if "feature_name" in data else "unknown")
        except (OSError, ValueError) as err:
            if isinstance(err, ValueError) and str(path) in str(err):
                raise
            raise ValueError(f"cannot read reference statistics {path}: {err}") from err


# the metrics


def frechet_distance(reference: ReferenceStats, generated) -> float:
    """FID between the reference statistics and generated features (M, D)."""
    fake = _as_features(generated, "generated features")
    if fake.shape[1] != reference.mean.shape[0]:
        raise ValueError(f"generated features have {fake.shape[1]} dims, the reference {reference.mean.shape[0]}: "
                         "were they computed with the same feature network?")
    if fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 generated images, got {fake.shape[0]}")
    metric = FrechetInceptionDistance(feature=_GivenFeatures(fake.shape[1])).double()
    mean = torch.as_tensor(reference.mean, dtype=torch.float64)
    metric.real_features_sum = mean * reference.n
    metric.real_features_cov_sum = (torch.as_tensor(reference.cov, dtype=torch.float64) * (reference.n - 1)
                                    + reference.n * torch.outer(mean, mean))
    metric.real_features_num_samples = torch.tensor(reference.n)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(reference, generated, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over random subsets) between reference and generated features."""
    real, fake = _as_features(reference, "reference features"), _as_features(generated, "generated features")
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 images on each side, got {real.shape[0]} and {fake.shape[0]}")
    metric = KernelInceptionDistance(feature=_GivenFeatures(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """IS (mean, std over splits) of classifier logits (M, C): exp E[KL(p(y|x) ‖ p(y))]."""
    logits = _as_features(logits, "classifier logits")
    splits = max(1, min(splits, logits.shape[0]))
    metric = InceptionScore(feature=_GivenFeatures(logits.shape[1]), splits=splits)
    metric.update(logits)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) if splits > 1 else 0.0


def _kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    distances = torch.cdist(features, features)  # (N, N)
    return distances.kthvalue(k + 1, dim=1).values  # (N,) the point itself is its 0th neighbour


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Which points (P, D) lie within radius of some centre (N, D)."""
    found = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start:start + chunk], centres)  # (p, N)
        found.append((d <= radii[None]).any(dim=1))
    return torch.cat(found)


def precision_recall(reference, generated, k: int = 3) -> tuple[float, float]:
    """Improved precision (generated inside the reference manifold) and recall (the other way)."""
    real, fake = _as_features(reference, "reference features"), _as_features(generated, "generated features")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images on each side, got "
                         f"{real.shape[0]} reference and {fake.shape[0]} generated")
    precision = _inside(fake, real, _kth_neighbour_radii(real, k)).double().mean()
    recall = _inside(real, fake, _kth_neighbour_radii(fake, k)).double().mean()
    return float(precision), float(recall)


def all_metrics(reference: ReferenceStats, generated, logits: Optional[torch.Tensor] = None,
                kid_subsets: int = 100) -> dict:
    """Every metric the command reports, as a JSON-able dict."""
    fake = _as_features(generated, "generated features")
    # subsets of a quarter of the smaller set, so that their spread says how sure the mean is
    size = max(2, min(1000, reference.features.shape[0] // 4, fake.shape[0] // 4))
    kid_mean, kid_std = kernel_distance(reference.features, fake, subsets=kid_subsets, subset_size=size)
    precision, recall = precision_recall(reference.features, fake)
    out = {"fid": frechet_distance(reference, fake), "kid_mean": kid_mean, "kid_std": kid_std,
           "precision": precision, "recall": recall, "n_samples": int(fake.shape[0]),
           "n_reference": int(reference.n), "features": reference.feature_name}
    if logits is not None:
        out["inception_score"], out["inception_score_std"] = inception_score(logits)
    return out
