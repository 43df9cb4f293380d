"""Sample-quality metrics for the book: FID, IS, precision/recall and class coverage in the feature space of
the book's own small MNIST classifier, plus mode-collapse counts for the 2-D toy mixtures.

Why not Inception-v3? Its ImageNet features describe 299x299 colour photos, need a 100 MB download and a GPU
to be quick. A CNN trained on MNIST itself (`MNISTClassifier`, >= 99% test accuracy, weights shipped in
`gan_utils/assets/mnist_classifier.pt`, under 1 MB) sees what matters for digits and runs on a CPU in seconds.
The numbers are therefore *not* comparable with FIDs published for MNIST with Inception features; compare
them only with each other, at the same sample size (FID is biased upward for small N).

    from gan_utils import metrics
    scores = metrics.evaluate(train.generate(net_G, 10_000))   # {'fid', 'is', 'coverage', 'precision', 'recall'}

Every image tensor given to this module is float in [-1, 1], shape (N, 1, 28, 28) (or (N, 28, 28)),
the range of G's Tanh output; `data.to_unit_range` converts uint8 MNIST.
`scripts/train_classifier.py` rebuilds the weights.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from . import data

CLASSIFIER_FORMAT = "gan_utils.classifier.v1"
ASSET_PATH = Path(__file__).resolve().parent / "assets" / "mnist_classifier.pt"
NUM_CLASSES = 10
MIN_CLASS_SHARE = 0.01  # a digit counts as produced when >= 1% of samples are classified as it (1/10 of fair)

ArrayLike = Union[torch.Tensor, np.ndarray, float, int]

__all__ = [
    "MNISTClassifier", "ClassifierFeatures", "load_classifier", "classifier_features", "class_probabilities",
    "classifier_outputs", "predict", "gaussian_stats", "frechet_distance", "fid", "fid_from_features",
    "fid_torchmetrics", "inception_score", "inception_score_from_probs", "class_histogram", "class_coverage",
    "precision_recall", "reference_images", "training_images", "real_floor", "evaluate",
    "high_quality_fraction", "modes_covered", "ASSET_PATH",
]


# --- the classifier ---------------------------------------------------------------------------------

class MNISTClassifier(nn.Module):
    """conv-conv-pool-conv-pool-fc(128)-fc(10) on (N, 1, 28, 28) images in [-1, 1]; returns logits (N, 10)."""

    feature_dim = 128

    def __init__(self, dropout: float = 0.25):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True),    # (N, 16, 28, 28)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True),   # (N, 32, 28, 28)
            nn.MaxPool2d(2),                                          # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),   # (N, 64, 14, 14)
            nn.MaxPool2d(2),                                          # (N, 64, 7, 7)
            nn.Flatten(),                                             # (N, 3136)
        )
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(64 * 7 * 7, self.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, NUM_CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations (N, 128): the space FID, precision and recall are measured in."""
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10)."""
        return self.head(self.features(x))


class ClassifierFeatures(nn.Module):
    """`classifier.features` as a module for torchmetrics' custom-feature FID: (N, 1, 28, 28) -> (N, 128).

    `num_features` tells torchmetrics the feature size; without it torchmetrics would probe the network
    with a (1, 3, 299, 299) uint8 dummy image, which this MNIST network cannot take.
    """

    def __init__(self, classifier: MNISTClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = int(classifier.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)

    def train(self, mode: bool = True) -> "ClassifierFeatures":
        """Stay in eval mode whatever the caller asks: dropout must never touch measured features."""
        return super().train(False)


def load_classifier(device: Union[str, torch.device] = "cpu", path: Union[str, Path, None] = None) -> MNISTClassifier:
    """The book's trained MNISTClassifier, fp32, in eval mode, on `device` (a fresh copy on every call)."""
    path = Path(path) if path is not None else ASSET_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"the classifier weights are missing: {path}. They ship with gan_utils (package data "
            "'assets/*'); reinstall the package, or rebuild them with `python scripts/train_classifier.py`.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read the classifier weights {path} ({type(exc).__name__}: {exc}); "
                           "rebuild them with `python scripts/train_classifier.py`.") from exc
    if not isinstance(blob, dict) or blob.get("format") != CLASSIFIER_FORMAT:
        raise RuntimeError(f"{path} is not a {CLASSIFIER_FORMAT} file; rebuild it with "
                           "`python scripts/train_classifier.py`.")
    net = MNISTClassifier()
    net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return net.to(device).eval()


@functools.lru_cache(maxsize=4)
def _shared_classifier(device: str) -> MNISTClassifier:
    """One loaded classifier per device, reused when a function is called with classifier=None."""
    net = load_classifier(device)
    net.requires_grad_(False)
    return net


def _resolve(classifier: Optional[nn.Module], images: torch.Tensor) -> nn.Module:
    if classifier is not None:
        return classifier
    return _shared_classifier(str(images.device))


# --- input checks -----------------------------------------------------------------------------------

def _check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Return `images` as (N, 1, 28, 28) float in [-1, 1], or raise a ValueError/TypeError saying what to fix."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        raise ValueError(f"{name} are uint8 pixels in [0, 255]; convert them to floats in [-1, 1] with "
                         "data.to_unit_range(x) first")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be float in [-1, 1], got dtype {images.dtype}")
    if images.dim() == 3 and tuple(images.shape[1:]) == (28, 28):
        images = images.unsqueeze(1)
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name} must be MNIST-shaped (N, 1, 28, 28) or (N, 28, 28), got {tuple(images.shape)}")
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contain NaN or inf values (did training diverge?)")
    data.check_pixel_range(images, name)
    return images


def _as_features(feats: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(feats).detach().to("cpu", torch.float64)
    if t.dim() != 2 or len(t) < 2:
        raise ValueError(f"{name} must be a 2-D (N, d) feature matrix with N >= 2, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():  # NaN would pass every distance test silently (precision 0.98 of garbage)
        raise ValueError(f"{name} holds NaN or infinite values; check the images (a diverged G?) before scoring")
    return t


# --- features and class probabilities ---------------------------------------------------------------

@torch.no_grad()
def _embed(images: torch.Tensor, classifier: Optional[nn.Module], batch_size: int,
           want: tuple[str, ...] = ("features", "probs")) -> dict[str, torch.Tensor]:
    """One pass of the classifier: features (N, d) and/or class probabilities (N, 10), float64 on CPU."""
    images = _check_images(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    net = _resolve(classifier, images)
    if net.training:
        raise ValueError("the classifier is in training mode (dropout on); call classifier.eval() first")
    device = next(net.parameters()).device
    out: dict[str, list[torch.Tensor]] = {key: [] for key in want}
    for chunk in images.split(batch_size):
        feats = net.features(chunk.to(device, torch.float32))           # (B, d)
        if "features" in out:
            out["features"].append(feats.double().cpu())
        if "probs" in out:
            out["probs"].append(torch.softmax(net.head(feats).double(), dim=1).cpu())  # (B, 10)
    return {key: torch.cat(parts) for key, parts in out.items()}


def classifier_features(images: torch.Tensor, classifier: Optional[nn.Module] = None,
                        batch_size: int = 500) -> torch.Tensor:
    """Penultimate classifier activations phi(x), (N, 128) float64 on CPU, for images in [-1, 1]."""
    return _embed(images, classifier, batch_size, ("features",))["features"]


def class_probabilities(images: torch.Tensor, classifier: Optional[nn.Module] = None,
                        batch_size: int = 500) -> torch.Tensor:
    """p(y|x) = softmax(classifier(x)), (N, 10) float64 on CPU."""
    return _embed(images, classifier, batch_size, ("probs",))["probs"]


def classifier_outputs(images: torch.Tensor, classifier: Optional[nn.Module] = None,
                       batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Features phi(x) (N, 128) and p(y|x) (N, 10) from one pass of the classifier, float64 on CPU."""
    out = _embed(images, classifier, batch_size)
    return out["features"], out["probs"]


def predict(images: torch.Tensor, classifier: Optional[nn.Module] = None, batch_size: int = 500) -> torch.Tensor:
    """Predicted digit argmax_y p(y|x), (N,) int64."""
    return class_probabilities(images, classifier, batch_size).argmax(dim=1)


# --- Frechet distance and FID -----------------------------------------------------------------------

def gaussian_stats(feats: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """mu = mean_i f_i and Sigma = sum_i (f_i - mu)(f_i - mu)^T / (N - 1) of features (N, d), float64."""
    f = _as_features(feats, "feats")
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def _sqrtm_psd(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix: V diag(sqrt(max(w, 0))) V^T from Sigma = V diag(w) V^T."""
    w, v = torch.linalg.eigh(sigma)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) between N(mu1, S1) and N(mu2, S2); S are covariances.

    Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(S1^{1/2} S2 S1^{1/2})): that matrix is symmetric PSD and has the
    eigenvalues of S1 S2, so two `eigh` calls replace scipy's non-symmetric sqrtm and never produce complex
    numbers. Scalars work too (1-D Gaussians: pass variances). Rounding can give -1e-12; the result is >= 0.
    """
    m1 = torch.as_tensor(mu1, dtype=torch.float64).reshape(-1)
    m2 = torch.as_tensor(mu2, dtype=torch.float64).reshape(-1)
    d = m1.numel()
    s1 = torch.as_tensor(sigma1, dtype=torch.float64)
    s2 = torch.as_tensor(sigma2, dtype=torch.float64)
    s1 = s1.reshape(1, 1) if s1.numel() == 1 and d == 1 else s1
    s2 = s2.reshape(1, 1) if s2.numel() == 1 and d == 1 else s2
    if m2.numel() != d or tuple(s1.shape) != (d, d) or tuple(s2.shape) != (d, d):
        raise ValueError(f"shapes disagree: mu1 {tuple(m1.shape)}, mu2 {tuple(m2.shape)}, sigma1 {tuple(s1.shape)}, "
                         f"sigma2 {tuple(s2.shape)}; expected (d,), (d,), (d, d), (d, d)")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2           # remove rounding asymmetry
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = m1 - m2
    fd = diff.dot(diff) + s1.trace() + s2.trace() - 2 * tr_covmean
    return max(float(fd), 0.0)


def fid_from_features(real_feats: ArrayLike, fake_feats: ArrayLike) -> float:
    """FID = frechet_distance of the Gaussians fitted (gaussian_stats) to two (N, d) feature sets."""
    mu_r, sigma_r = gaussian_stats(real_feats)
    mu_f, sigma_f = gaussian_stats(fake_feats)
    return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)


def fid(real_images: torch.Tensor, fake_images: torch.Tensor, classifier: Optional[nn.Module] = None,
        batch_size: int = 500) -> float:
    """FID(real, fake) = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^{1/2}) in the classifier's feature space."""
    if len(real_images) < 2 or len(fake_images) < 2:
        raise ValueError("FID needs at least 2 real and 2 fake images (use thousands: it is biased for small N)")
    return fid_from_features(classifier_features(real_images, classifier, batch_size),
                             classifier_features(fake_images, classifier, batch_size))


def fid_torchmetrics(real_images: torch.Tensor, fake_images: torch.Tensor,
                     classifier: Optional[nn.Module] = None, batch_size: int = 500) -> float:
    """The same FID through torchmetrics' FrechetInceptionDistance(feature=ClassifierFeatures(classifier)).

    torchmetrics' custom-feature mode needs no torch-fidelity: `update` feeds images straight to the module,
    accumulates sum f and sum f f^T in float64, and `compute` takes Tr((S1 S2)^{1/2}) from eigvals(S1 @ S2).
    Its float64 states do not exist on Apple's MPS: use `fid` (the pure path) there.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:
        raise ImportError("fid_torchmetrics needs torchmetrics (`pip install torchmetrics`); "
                          "metrics.fid computes the same number without it") from exc
    real_images = _check_images(real_images, "real_images")
    fake_images = _check_images(fake_images, "fake_images")
    if len(real_images) < 2 or len(fake_images) < 2:
        raise ValueError("FID needs at least 2 real and 2 fake images")
    net = _resolve(classifier, real_images)
    device = next(net.parameters()).device
    metric = FrechetInceptionDistance(feature=ClassifierFeatures(net)).to(device)
    with torch.no_grad():
        for images, is_real in ((real_images, True), (fake_images, False)):
            for chunk in images.split(batch_size):
                metric.update(chunk.to(device, torch.float32), real=is_real)
        return float(metric.compute())


# --- Inception Score and class coverage -------------------------------------------------------------

def inception_score_from_probs(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y))) per split of (N, 10) probabilities; mean and std."""
    probs = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, num_classes), got shape {tuple(probs.shape)}")
    if not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be a positive int, got {splits!r}")
    if len(probs) < splits:
        raise ValueError(f"{len(probs)} images cannot be cut into {splits} splits; pass fewer splits")
    log_p = probs.clamp(min=1e-30).log()
    scores = []
    for part in torch.tensor_split(log_p, splits):
        log_marginal = part.exp().mean(dim=0).log()                     # log p(y) over this split
        kl = (part.exp() * (part - log_marginal)).sum(dim=1)            # KL(p(y|x) || p(y)) per image
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(fake_images: torch.Tensor, classifier: Optional[nn.Module] = None, splits: int = 10,
                    batch_size: int = 500) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) with the MNIST classifier; mean and std over `splits` chunks.

    1 (every image gets the same prediction) <= IS <= 10 (confident predictions, all digits equally often).
    """
    return inception_score_from_probs(class_probabilities(fake_images, classifier, batch_size), splits)


def _histogram_from_probs(probs: torch.Tensor) -> torch.Tensor:
    return torch.bincount(probs.argmax(dim=1), minlength=NUM_CLASSES).double() / len(probs)


def class_histogram(images: torch.Tensor, classifier: Optional[nn.Module] = None,
                    batch_size: int = 500) -> torch.Tensor:
    """h_c = #{x : argmax p(y|x) = c} / N, the share of images predicted as each digit, (10,) float64."""
    return _histogram_from_probs(class_probabilities(images, classifier, batch_size))


def _coverage_from_probs(probs: torch.Tensor, min_share: float = MIN_CLASS_SHARE) -> float:
    return float((_histogram_from_probs(probs) >= min_share).double().mean())


def class_coverage(images: torch.Tensor, classifier: Optional[nn.Module] = None, min_share: float = MIN_CLASS_SHARE,
                   batch_size: int = 500) -> float:
    """#{c : h_c >= min_share} / 10: the fraction of digits G produces; default 1%, a tenth of a fair share."""
    return _coverage_from_probs(class_probabilities(images, classifier, batch_size), min_share)


# --- precision and recall (Kynkaanniemi et al., 2019) -----------------------------------------------

def _knn_radii(feats: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point in the same set, (N,)."""
    radii = []
    for block in feats.split(batch_size):
        dist = torch.cdist(block, feats)                                # (B, N); self-distance ~0 comes first
        radii.append(dist.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def precision_recall(real_feats: ArrayLike, fake_feats: ArrayLike, k: int = 3,
                     batch_size: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al., 2019) with k-NN balls in feature space.

    precision = (1/M) sum_j 1[exists i: ||g_j - r_i|| <= NN_k(r_i)]  (fakes inside the real manifold)
    recall    = (1/N) sum_i 1[exists j: ||r_i - g_j|| <= NN_k(g_j)]  (reals inside the fake manifold)
    Distances are computed in row blocks of `batch_size`, so 10k x 10k needs ~40 MB at a time.
    """
    real = _as_features(real_feats, "real_feats").float()
    fake = _as_features(fake_feats, "fake_feats").float()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if not isinstance(k, int) or not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"k must be an int in [1, min(N_real, N_fake) - 1], got {k!r}")
    radius_real = _knn_radii(real, k, batch_size)                       # (N,)
    radius_fake = _knn_radii(fake, k, batch_size)                       # (M,)
    fake_inside = []
    real_covered = torch.zeros(len(real), dtype=torch.bool)
    for block, radius_block in zip(fake.split(batch_size), radius_fake.split(batch_size)):
        dist = torch.cdist(block, real)                                 # (B, N)
        fake_inside.append((dist <= radius_real[None, :]).any(dim=1))
        real_covered |= (dist <= radius_block[:, None]).any(dim=0)
    return float(torch.cat(fake_inside).double().mean()), float(real_covered.double().mean())


# --- everything at once -----------------------------------------------------------------------------

def reference_images(n: int = 10_000, seed: int = 0) -> torch.Tensor:
    """n real MNIST test images in [-1, 1], (n, 1, 28, 28): a fixed random subset (all 10,000 when n = 10,000).

    Random, not the first n: the first 5,000 test digits come from NIST's cleaner SD-3 writers and the last
    5,000 from SD-1, and the classifier's FID between those two halves is many times that between random halves.
    """
    return _random_digits(n, seed, train=False)


def training_images(n: int = 10_000, seed: int = 0) -> torch.Tensor:
    """n random MNIST training images in [-1, 1], (n, 1, 28, 28): what a G that copied its data would draw."""
    return _random_digits(n, seed, train=True)


def _random_digits(n: int, seed: int, *, train: bool) -> torch.Tensor:
    """n MNIST images of one split in [-1, 1], (n, 1, 28, 28), in a random order fixed by seed."""
    images, _ = data.load_mnist(train=train)
    if not isinstance(n, int) or not 2 <= n <= len(images):
        raise ValueError(f"n must be an int in [2, {len(images)}], got {n!r}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return data.to_unit_range(images[order]).unsqueeze(1)


def real_floor(n: int = 10_000, seed: int = 0) -> dict[str, float]:
    """The floor: `evaluate` of n real training digits, the best scores a generator can expect at this n.

    With `train.score(net_G, n, seed=0)` this is the book's one canonical evaluation (n = 10,000, seed 0):
    every page that scores a shipped generator or the floor uses it, so the same model gets the same numbers.
    """
    return evaluate(training_images(n, seed), n=n)


@functools.lru_cache(maxsize=2)
def _real_reference(n: int, device: str) -> dict[str, torch.Tensor]:
    """Features and probabilities of reference_images(n), computed once per (n, device)."""
    return _embed(reference_images(n).to(device), None, 500)


def evaluate(fake_images: torch.Tensor, real_images: Optional[torch.Tensor] = None, n: int = 10_000,
             classifier: Optional[nn.Module] = None, k: int = 3, splits: int = 10) -> dict[str, float]:
    """FID, IS, class coverage, precision and recall of the first n fakes against n real images.

    Real images default to reference_images(n), MNIST test digits (the classifier trained on the training set).
    Compare scores only at the same n: FID shrinks as n grows.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if isinstance(fake_images, torch.Tensor) and len(fake_images) < n:
        n = len(fake_images)  # equal sizes keep FID's small-sample bias the same on both sides
    if n < 2:
        raise ValueError("evaluate needs at least 2 fake images (use thousands: FID is biased for small N)")
    fake = _embed(fake_images[:n], classifier, 500)
    if real_images is None and classifier is None:
        real = _real_reference(n, str(fake_images.device))
    else:
        real = _embed(real_images[:n] if real_images is not None else reference_images(n), classifier, 500)
    precision, recall = precision_recall(real["features"], fake["features"], k=k)
    return {
        "fid": fid_from_features(real["features"], fake["features"]),
        "is": inception_score_from_probs(fake["probs"], min(splits, len(fake["probs"])))[0],
        "coverage": _coverage_from_probs(fake["probs"]),
        "precision": precision,
        "recall": recall,
    }


# --- mode collapse on 2-D toy mixtures --------------------------------------------------------------

# The convention of the 2-D ring/grid benchmarks in VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al.,
# 2018): draw 2,500 samples; a sample is high quality when it lies within 3 standard deviations of its nearest
# mode; a mode with fewer than 20 of those samples is lost. We keep the ratio, 20 / 2500 = 0.8% of the samples,
# so the rule scales with n (for 8 equal modes a covered mode needs ~6% of its fair share of 12.5%).
MIN_MODE_FRACTION = 20 / 2500


def _nearest_mode(samples: ArrayLike, centers: ArrayLike, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample: distance to its nearest centre (in units of std) and that centre's index."""
    x = torch.as_tensor(samples).detach().to("cpu", torch.float64)
    c = torch.as_tensor(centers).detach().to("cpu", torch.float64)
    if x.dim() != 2 or c.dim() != 2 or x.shape[1] != c.shape[1] or len(x) == 0 or len(c) == 0:
        raise ValueError(f"samples (n, D) and centers (M, D) must be non-empty and agree on D; got "
                         f"{tuple(x.shape)} and {tuple(c.shape)}")
    if not std > 0:
        raise ValueError(f"std must be > 0 (the per-axis std of each mode), got {std!r}")
    dist, idx = torch.cdist(x, c).min(dim=1)
    return dist / std, idx


def high_quality_fraction(samples: ArrayLike, centers: ArrayLike, std: float, num_std: float = 3.0) -> float:
    """#{x : min_m ||x - c_m|| <= num_std * std} / n: the share of samples near some mode (VEEGAN's metric)."""
    dist, _ = _nearest_mode(samples, centers, std)
    return float((dist <= num_std).double().mean())


def modes_covered(samples: ArrayLike, centers: ArrayLike, std: float, num_std: float = 3.0,
                  min_fraction: float = MIN_MODE_FRACTION) -> int:
    """#{m : #{high-quality x nearest to c_m} >= min_fraction * n}: modes that get at least 0.8% of samples."""
    dist, idx = _nearest_mode(samples, centers, std)
    counts = torch.bincount(idx[dist <= num_std], minlength=len(torch.as_tensor(centers)))
    min_count = max(1, math.ceil(min_fraction * len(dist) - 1e-9))   # 20 of 2500, not 21 by rounding
    return int((counts >= min_count).sum())
