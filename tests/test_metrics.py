"""Tests for gan_utils.metrics: the shipped classifier, FID (pure and torchmetrics), IS, coverage,
precision/recall, the toy mode-collapse counts and the input checks. CPU, a few seconds each."""
from __future__ import annotations

import math

import pytest
import torch

from gan_utils import data, metrics


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = data.load_mnist(train=False)
    return data.to_unit_range(images).unsqueeze(1), labels           # (10000, 1, 28, 28) in [-1, 1]


@pytest.fixture(scope="module")
def classifier() -> metrics.MNISTClassifier:
    return metrics.load_classifier()


@pytest.fixture(scope="module")
def test_outputs(test_set, classifier) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the 10k test images: features (10000, 128) and p(y|x) (10000, 10)."""
    return metrics.classifier_outputs(test_set[0], classifier)


@pytest.fixture(scope="module")
def test_features(test_outputs) -> torch.Tensor:
    return test_outputs[0]


def random_halves(n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n // 2], order[n // 2:]


def noise_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- the classifier ---------------------------------------------------------------------------------

def test_weights_load_with_weights_only_and_are_small():
    blob = torch.load(metrics.ASSET_PATH, map_location="cpu", weights_only=True)
    assert blob["format"] == metrics.CLASSIFIER_FORMAT
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values())
    assert blob["test_accuracy"] >= 0.99
    assert metrics.ASSET_PATH.stat().st_size < 1_000_000


def test_classifier_reaches_99_percent_on_the_test_set(test_set, classifier, test_outputs):
    images, labels = test_set
    assert not classifier.training and next(classifier.parameters()).dtype == torch.float32
    accuracy = float((test_outputs[1].argmax(dim=1) == labels).double().mean())
    print(f"classifier test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.99, accuracy
    assert torch.equal(metrics.predict(images[:300], classifier), test_outputs[1][:300].argmax(dim=1))


def test_features_shape_and_dtype(test_set, classifier):
    feats = metrics.classifier_features(test_set[0][:37], classifier, batch_size=10)
    assert feats.shape == (37, metrics.MNISTClassifier.feature_dim) and feats.dtype == torch.float64
    # batching must not change the numbers
    torch.testing.assert_close(feats, metrics.classifier_features(test_set[0][:37], classifier, batch_size=500),
                               rtol=1e-4, atol=1e-5)  # float32 convs: the batch split changes rounding


def test_missing_weights_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_classifier.py"):
        metrics.load_classifier(path=tmp_path / "nope.pt")


# --- Frechet distance -------------------------------------------------------------------------------

def test_frechet_distance_1d_closed_form():
    # 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s; the function takes variances.
    assert metrics.frechet_distance(1.0, 4.0, -2.0, 9.0) == pytest.approx(3.0 ** 2 + (2.0 - 3.0) ** 2)


def test_frechet_distance_diagonal_closed_form():
    gen = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(2, 16, generator=gen, dtype=torch.float64)
    s1, s2 = torch.rand(2, 16, generator=gen, dtype=torch.float64) + 0.1               # standard deviations
    expected = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum())
    got = metrics.frechet_distance(mu1, torch.diag(s1 ** 2), mu2, torch.diag(s2 ** 2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_general_matches_scipy_formula():
    # Non-diagonal, non-commuting covariances: compare with Tr((S1 S2)^{1/2}) from the eigenvalues of S1 S2.
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 8, generator=gen, dtype=torch.float64), torch.randn(8, 8, generator=gen, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(8, dtype=torch.float64), b @ b.T
    mu = torch.zeros(8, dtype=torch.float64)
    tr_covmean = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    expected = float(s1.trace() + s2.trace() - 2 * tr_covmean)
    assert metrics.frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-8)
    assert metrics.frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes disagree"):
        metrics.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))


# --- FID --------------------------------------------------------------------------------------------

def test_fid_floor_of_real_vs_real_is_small_and_noise_is_far(test_features, classifier):
    first, second = random_halves()
    floor = metrics.fid_from_features(test_features[first], test_features[second])
    noise = metrics.fid_from_features(test_features[first],
                                      metrics.classifier_features(noise_images(5000), classifier))
    # MNIST's test set is two writer pools (first 5,000 from NIST SD-3, last 5,000 from SD-1): FID sees it.
    writers = metrics.fid_from_features(test_features[:5000], test_features[5000:])
    print(f"FID 5k vs 5k: random halves {floor:.2f}, first vs second half {writers:.2f}, noise {noise:.0f}")
    assert floor < 5.0
    assert noise > 100 * floor
    assert writers > 3 * floor


def test_fid_image_path_matches_feature_path(test_set, test_features, classifier):
    images = test_set[0]
    assert metrics.fid(images[:500], images[500:1000], classifier) == pytest.approx(
        metrics.fid_from_features(test_features[:500], test_features[500:1000]), rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid(images[:1], images[1:10], classifier)


def test_fid_torchmetrics_agrees_with_pure_path(test_set, classifier):
    pytest.importorskip("torchmetrics")
    real, fake = test_set[0][:1000], torch.cat([test_set[0][1000:1500], noise_images(500)])
    pure = metrics.fid(real, fake, classifier)
    via_torchmetrics = metrics.fid_torchmetrics(real, fake, classifier)
    assert via_torchmetrics == pytest.approx(pure, rel=1e-4, abs=1e-3)


# --- Inception Score and coverage ---------------------------------------------------------------------

def test_inception_score_of_real_digits_is_near_10_and_of_one_image_is_1(test_set, test_outputs, classifier):
    mean, std = metrics.inception_score_from_probs(test_outputs[1], splits=10)
    print(f"IS of the 10k real test images: {mean:.3f} +- {std:.3f}")
    assert 9.0 < mean <= 10.0 and std < 0.5
    # the image path equals the probability path
    assert metrics.inception_score(test_set[0][:1000], classifier, splits=5) == pytest.approx(
        metrics.inception_score_from_probs(test_outputs[1][:1000], splits=5))
    one = test_set[0][:1].repeat(200, 1, 1, 1)
    assert metrics.inception_score(one, classifier)[0] == pytest.approx(1.0, abs=1e-6)


def test_class_histogram_and_coverage(test_set, classifier):
    images, labels = test_set
    hist = metrics.class_histogram(images[:1000], classifier)
    assert hist.shape == (10,) and hist.sum() == pytest.approx(1.0)
    assert metrics.class_coverage(images[:1000], classifier) == 1.0
    ones = images[labels == 1][:300]
    assert metrics.class_coverage(ones, classifier) == pytest.approx(0.1)
    assert metrics.class_histogram(ones, classifier)[1] > 0.95


# --- precision and recall -----------------------------------------------------------------------------

def test_precision_recall_real_vs_real_high_and_one_class_has_low_recall(test_set, test_features):
    _, labels = test_set
    first, second = random_halves()
    a, b = test_features[first[:3000]], test_features[second[:3000]]
    precision, recall = metrics.precision_recall(a, b, k=3)
    print(f"precision/recall real vs real (3k): {precision:.3f} / {recall:.3f}")
    assert precision > 0.7 and recall > 0.7, (precision, recall)
    # a "generator" that only draws sevens: its samples are realistic (high precision) but recall is poor
    sevens = test_features[second][labels[second] == 7]
    precision, recall = metrics.precision_recall(a, sevens, k=3)
    assert precision > 0.7 and recall < 0.3, (precision, recall)


def test_precision_recall_memory_safe_batches_agree(test_features):
    a, b = test_features[:700], test_features[700:1500]
    assert metrics.precision_recall(a, b, batch_size=64) == metrics.precision_recall(a, b, batch_size=5000)


# --- evaluate -----------------------------------------------------------------------------------------

def test_evaluate_returns_every_metric(mnist_train):
    train_images = mnist_train[0]
    pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[:2000]
    fake = data.to_unit_range(train_images[pick])                  # training digits: a perfect "generator"
    scores = metrics.evaluate(fake, n=2000)
    print(f"evaluate(2k training digits): {scores}")
    assert set(scores) == {"fid", "is", "coverage", "precision", "recall"}
    # FID's small-sample bias grows like 1/n: ~7 at 2k vs 2k for two sets of real digits
    assert scores["fid"] < 15 and scores["is"] > 8.5 and scores["coverage"] == 1.0
    assert scores["precision"] > 0.7 and scores["recall"] > 0.7
    noisy = metrics.evaluate(noise_images(2000), n=2000)
    assert noisy["fid"] > 50 * scores["fid"] and noisy["precision"] < 0.1


# --- mode collapse on toy data ------------------------------------------------------------------------

def test_modes_covered_ring_and_single_mode():
    centers = data.ring_centers()
    ring = data.ring_of_gaussians(2500, std=0.05, seed=0)
    assert metrics.modes_covered(ring, centers, std=0.05) == 8
    assert metrics.high_quality_fraction(ring, centers, std=0.05) > 0.97   # 1 - exp(-9/2) = 98.9% in 2-D
    collapsed = centers[3] + 0.05 * torch.randn(2500, 2, generator=torch.Generator().manual_seed(0))
    assert metrics.modes_covered(collapsed, centers, std=0.05) == 1
    grid = data.grid_of_gaussians(2500, std=0.05, seed=0)
    assert metrics.modes_covered(grid, data.grid_centers(), std=0.05) == 25


def test_modes_covered_ignores_low_quality_and_rare_samples():
    centers = data.ring_centers()
    far = torch.full((2500, 2), 10.0)                                  # nowhere near any mode
    assert metrics.modes_covered(far, centers, std=0.05) == 0
    assert metrics.high_quality_fraction(far, centers, std=0.05) == 0.0
    # 19 of 2500 samples on mode 0 is below the 20/2500 rule: that mode is not covered
    few = torch.cat([centers[0].repeat(19, 1), centers[1].repeat(2481, 1)])
    assert metrics.modes_covered(few, centers, std=0.05) == 1
    enough = torch.cat([centers[0].repeat(20, 1), centers[1].repeat(2480, 1)])
    assert metrics.modes_covered(enough, centers, std=0.05) == 2
    with pytest.raises(ValueError, match="std"):
        metrics.modes_covered(few, centers, std=0.0)


# --- bad inputs ---------------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(test_set, classifier):
    images = test_set[0][:10]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.classifier_features((images + 1) / 2, classifier)
    with pytest.raises(ValueError, match="to_unit_range"):
        metrics.classifier_features(data.load_mnist(train=False)[0][:10], classifier)
    with pytest.raises(ValueError, match="MNIST-shaped"):
        metrics.classifier_features(images.view(10, 784), classifier)
    with pytest.raises(ValueError, match="MNIST-shaped"):
        metrics.classifier_features(images.repeat(1, 3, 1, 1), classifier)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.classifier_features(images * 3, classifier)
    with pytest.raises(ValueError, match="NaN"):
        metrics.classifier_features(torch.full_like(images, math.nan), classifier)
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(images[:5], classifier, splits=10)
    # (N, 28, 28) is accepted as a single-channel batch
    assert metrics.classifier_features(images[:, 0], classifier).shape == (10, 128)


def test_the_canonical_floor_is_seeded_real_training_digits():
    a, b = metrics.training_images(300, seed=0), metrics.training_images(300, seed=0)
    assert a.shape == (300, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)  # the same seed, the same digits: one floor for every page
    assert not torch.equal(a, metrics.training_images(300, seed=1))
    floor = metrics.real_floor(300, seed=0)
    assert floor == metrics.evaluate(a, n=300)
    # real against real: about 35 at n = 300 (FID's small-sample bias), every class present
    assert floor["fid"] < 60 and floor["coverage"] == 1.0
    with pytest.raises(ValueError, match="n must be an int"):
        metrics.training_images(1)
