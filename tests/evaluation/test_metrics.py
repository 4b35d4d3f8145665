"""FID / KID / IS / precision-recall on feature vectors, and reference statistics files."""

import numpy as np
import pytest
import torch

from imagebart.evaluation.metrics import (
    ReferenceStats,
    all_metrics,
    frechet_distance,
    inception_score,
    kernel_distance,
    precision_recall,
)


def gaussian(n, mean, scales, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, len(scales))) * np.asarray(scales) + np.asarray(mean)


def closed_form_fid(a, b):
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the square root's trace from eigenvalues."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(eig.real.clip(0)).sum())


def test_fid_of_a_set_with_itself_is_zero():
    a = gaussian(500, [0, 1, 2], [1, 2, 0.5], seed=0)
    assert frechet_distance(ReferenceStats.from_features(a), a) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_the_closed_form_for_two_gaussians():
    a = gaussian(2000, [0, 0, 0, 0], [1, 1, 1, 1], seed=1)
    b = gaussian(1500, [1, -0.5, 0, 2], [2, 0.5, 1, 1.5], seed=2)
    expected = closed_form_fid(a, b)
    assert expected > 3  # the sets really differ
    assert frechet_distance(ReferenceStats.from_features(a), b) == pytest.approx(expected, rel=1e-6)


def test_kid_and_precision_recall_see_the_difference():
    d = 16
    a = gaussian(400, [0] * d, [1] * d, seed=3)
    same = gaussian(400, [0] * d, [1] * d, seed=4)
    shifted = gaussian(400, [4] + [0] * (d - 1), [1] * d, seed=5)
    kid_same, std_same = kernel_distance(a, same, subsets=50, subset_size=200)
    kid_far, _ = kernel_distance(a, shifted, subsets=50, subset_size=200)
    assert abs(kid_same) < 3 * std_same + 1e-3 and kid_far > 50 * abs(kid_same)
    assert precision_recall(a, a) == (1.0, 1.0)
    p_same, r_same = precision_recall(a, same)
    p_far, r_far = precision_recall(a, shifted)
    assert min(p_same, r_same) > 0.7 and max(p_far, r_far) < 0.5 * min(p_same, r_same)


def test_inception_score_of_uniform_and_confident_classifiers():
    uniform = torch.zeros(100, 5)
    assert inception_score(uniform, splits=4)[0] == pytest.approx(1.0)
    confident = torch.full((1000, 5), -30.0)
    confident[torch.arange(1000), torch.arange(1000) % 5] = 30.0  # sure of one class, each class as often
    assert inception_score(confident, splits=1)[0] == pytest.approx(5.0, rel=1e-6)
    assert inception_score(confident, splits=4)[0] == pytest.approx(5.0, rel=0.02)  # random splits


def test_statistics_round_trip_through_a_file(tmp_path):
    a = gaussian(300, [1, 2, 3], [1, 1, 1], seed=6)
    stats = ReferenceStats.from_features(a, feature_name="demo", max_features=100)
    loaded = ReferenceStats.load(stats.save(tmp_path / "ref.npz"))
    assert loaded.n == 300 and loaded.feature_name == "demo" and loaded.features.shape == (100, 3)
    np.testing.assert_allclose(loaded.mean, a.mean(0))
    np.testing.assert_allclose(loaded.cov, np.cov(a, rowvar=False))
    b = gaussian(200, [1, 2, 3.5], [1, 1, 1], seed=7)
    assert all_metrics(loaded, b)["fid"] == pytest.approx(frechet_distance(stats, b))


@pytest.mark.parametrize("call, match", [
    (lambda: frechet_distance(ReferenceStats.from_features(np.ones((5, 3)) + np.eye(5, 3)), np.ones((5, 4))),
     "same feature network"),
    (lambda: frechet_distance(ReferenceStats.from_features(np.eye(5, 3)), np.ones((1, 3))), "at least 2"),
    (lambda: ReferenceStats.from_features(np.ones((1, 3))), "at least 2"),
    (lambda: precision_recall(np.eye(3), np.eye(3)), "needs more than 3"),
    (lambda: kernel_distance(np.ones((1, 2)), np.ones((5, 2))), "at least 2"),
    (lambda: frechet_distance(ReferenceStats.from_features(np.eye(5, 3)), np.full((4, 3), np.nan)), "NaN"),
])
def test_too_few_or_mismatched_features_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_file_that_is_not_statistics_is_named(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, arr_0=np.zeros((2, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="other.npz is not a reference statistics file"):
        ReferenceStats.load(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        ReferenceStats.load(tmp_path / "missing.npz")
