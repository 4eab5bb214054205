"""Sample-based quality metrics for models that can only sample (GANs), usable for any model.

**Mode coverage** on mixtures of well-separated Gaussians (PacGAN's setup, Lin et al. 2018,
following VEEGAN, Srivastava et al. 2017): every sample is assigned to its nearest mode; it is
*high quality* when it lies within ``num_std`` (3) standard deviations of that mode's mean; a
mode is *captured* when at least one high-quality sample is assigned to it. Reported: modes
captured, the high-quality share, and the KL divergence from the histogram of high-quality
samples over modes to the uniform distribution (nats; 0 when every mode gets the same share,
``log K`` when one mode gets everything).

**Within-mode spread**: those metrics cannot see a generator that puts each mode's samples
in a dot at its centre. Per covered mode, the spread is the root-mean-square deviation of
its high-quality samples from the mode's centre, per coordinate, divided by the data's
standard deviation ``std``: ``sqrt(mean_n |x_n - mu_k|^2 / D) / std``. 1 means as wide as
the data, 0.5 half as wide. Cutting at ``num_std`` standard deviations trims the data's own
tails slightly, so draws from the data distribution itself score
:func:`truncated_spread` (0.974 in 2-D at 3 sigma) rather than exactly 1. Reported as the
median over covered modes with at least two high-quality samples, and its range.

**Maximum mean discrepancy** (Gretton et al. 2012): a distribution-level score between samples
and held-out data, ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)`` with the Gaussian kernel
``k(x, y) = exp(-|x - y|^2 / (2 h^2))``, estimated without bias (the ``i = j`` terms left out,
so it is 0 in expectation when both sides come from one distribution and can be slightly
negative). Units: squared RKHS norm, dimensionless (kernel values lie in [0, 1]). On the
mixtures the bandwidth ``h`` is the modes' ``std``, the scale at which a within-mode collapse
shows (an energy distance, dominated by the distances between modes, barely sees it);
compare it with the floor of data against data of the same sizes.

**Frechet distance** (Heusel et al. 2017's FID recipe with a small in-domain network instead
of Inception): features of a small classifier trained on the same image data set (digits,
MNIST) are fitted by Gaussians and compared by
``|mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``. The function takes sample tensors, so
VAE, flow and GAN samples are scored the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.checks import as_data_tensor
from ..data.synthetic import grid_means, ring_means

RING_STD = 0.01
GRID_STD = 0.05
NUM_EVAL_SAMPLES = 2500


def truncated_spread(dim: int, num_std: float = 3.0) -> float:
    """Return the spread ratio that draws from a Gaussian mode itself score (dimensionless).

    ``sqrt(E[|x - mu|^2 / D | |x - mu| <= num_std * std]) / std`` for ``x ~ N(mu, std^2 I_D)``:
    ``sqrt(P(chi2_{D+2} <= t^2) / P(chi2_D <= t^2))`` with ``t = num_std``; 0.974 for D=2 at 3.
    """
    from scipy.special import gammainc

    if not isinstance(dim, int) or dim < 1 or not num_std > 0:
        raise ValueError(f"dim must be a positive integer and num_std positive, got {dim!r}, {num_std!r}")
    t2 = float(num_std) ** 2 / 2.0
    return math.sqrt(float(gammainc(dim / 2.0 + 1.0, t2) / gammainc(dim / 2.0, t2)))


def _spread_per_mode(
    samples: torch.Tensor, means: torch.Tensor, std: float, dist: torch.Tensor, nearest, high
) -> list[float | None]:
    """Return each mode's spread ratio (None for modes with fewer than two high-quality samples)."""
    out: list[float | None] = []
    d = samples.shape[1]
    for k in range(means.shape[0]):
        sel = high & (nearest == k)
        n = int(sel.sum())
        out.append(float((dist[sel].double().square().mean() / d).sqrt()) / std if n >= 2 else None)
    return out


def within_mode_spread(
    samples: torch.Tensor, means: torch.Tensor, std: float, num_std: float = 3.0
) -> dict[str, Any]:
    """Return the within-mode spread of ``samples`` ``(N, D)`` around modes ``means`` ``(K, D)``.

    Per mode with at least two high-quality samples (within ``num_std * std`` of it, nearest
    to it): the RMS deviation per coordinate from the mode's centre over ``std``. Keys:
    ``within_mode_spread`` (the median ratio over those modes; NaN when there is none),
    ``within_mode_spread_min`` and ``_max`` (its range), ``within_mode_spread_modes`` (how many
    modes it is taken over), ``within_mode_spread_per_mode`` (K ratios, None where a mode has
    fewer than two samples) and ``within_mode_spread_data`` (:func:`truncated_spread`: what
    draws from the data distribution itself score). All ratios are dimensionless.
    """
    samples, means = _check_modes(samples, means, std, num_std)
    dist, nearest = torch.cdist(samples, means).min(dim=1)
    high = dist <= num_std * std
    per_mode = _spread_per_mode(samples, means, std, dist, nearest, high)
    return _spread_summary(per_mode, samples.shape[1], num_std)


def _spread_summary(per_mode: list[float | None], dim: int, num_std: float) -> dict[str, Any]:
    vals = [v for v in per_mode if v is not None]
    return {
        "within_mode_spread": float(np.median(vals)) if vals else math.nan,
        "within_mode_spread_min": min(vals) if vals else math.nan,
        "within_mode_spread_max": max(vals) if vals else math.nan,
        "within_mode_spread_modes": len(vals),
        "within_mode_spread_per_mode": per_mode,
        "within_mode_spread_data": truncated_spread(dim, num_std),
    }


def _check_modes(samples, means, std, num_std) -> tuple[torch.Tensor, torch.Tensor]:
    samples = as_data_tensor(samples, "samples", max_rank=2)
    means = torch.as_tensor(means, dtype=samples.dtype)
    if means.dim() != 2 or means.shape[0] == 0:
        raise ValueError(f"means must have shape (K, D) with K >= 1, got {tuple(means.shape)}")
    if means.shape[1] != samples.shape[1]:
        raise ValueError(f"samples have {samples.shape[1]} dimensions but the modes have {means.shape[1]}")
    if not std > 0 or not num_std > 0:
        raise ValueError(f"std and num_std must be positive, got {std} and {num_std}")
    return samples, means


def mode_metrics(
    samples: torch.Tensor, means: torch.Tensor, std: float, num_std: float = 3.0
) -> dict[str, Any]:
    """Return mode-coverage metrics of ``samples`` ``(N, D)`` for modes at ``means`` ``(K, D)``.

    Keys: ``modes_captured`` (int, modes with at least one high-quality sample),
    ``num_modes`` (K), ``high_quality_share`` (fraction of samples within ``num_std * std``
    of their nearest mode), ``kl_to_uniform`` (nats, KL of the high-quality samples' mode
    histogram to uniform; NaN when there is no high-quality sample), ``mode_counts`` (list
    of K ints), ``num_samples``, and the within-mode spread of :func:`within_mode_spread`
    (``within_mode_spread``: median ratio of the samples' spread to the data's ``std`` over
    covered modes, with ``_min``, ``_max``, ``_modes``, ``_per_mode`` and ``_data``).
    """
    samples, means = _check_modes(samples, means, std, num_std)
    k = means.shape[0]
    dist, nearest = torch.cdist(samples, means).min(dim=1)
    high = dist <= num_std * std
    counts = torch.bincount(nearest[high], minlength=k)
    total = int(counts.sum())
    if total > 0:
        p = counts.double() / total
        nz = p > 0
        kl = float((p[nz] * (p[nz] * k).log()).sum())
    else:
        kl = math.nan
    return {
        "modes_captured": int((counts > 0).sum()),
        "num_modes": k,
        "high_quality_share": float(high.float().mean()),
        "kl_to_uniform": kl,
        "mode_counts": counts.tolist(),
        "num_samples": int(samples.shape[0]),
        **_spread_summary(
            _spread_per_mode(samples, means, std, dist, nearest, high), samples.shape[1], num_std
        ),
    }


def ring_mode_metrics(samples: torch.Tensor) -> dict[str, Any]:
    """Mode metrics for PacGAN's ring: 8 modes ``(cos 2 pi i/8, sin 2 pi i/8)``, std 0.01."""
    return mode_metrics(samples, ring_means(8, 1.0), RING_STD)


def grid_mode_metrics(samples: torch.Tensor) -> dict[str, Any]:
    """Mode metrics for PacGAN's grid: 25 modes at ``{-4, -2, 0, 2, 4}^2``, std 0.05."""
    return mode_metrics(samples, grid_means(5, 2.0), GRID_STD)


def mode_metrics_for_data(data: Any, samples: torch.Tensor) -> dict[str, Any]:
    """Mode metrics for a mixture :class:`~pyro_gen.data.DataSplit` (``ring``/``grid``).

    Reads the modes and standard deviation from ``data.info`` (``means``, ``std``), so
    non-default rings and grids are scored against their own modes.
    """
    info = getattr(data, "info", {}) or {}
    if "means" not in info or "std" not in info:
        raise ValueError(
            f"data set {getattr(data, 'name', '?')!r} is not a Gaussian mixture with known modes"
        )
    return mode_metrics(samples, torch.tensor(info["means"]), float(info["std"]))


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidth: float, block: int = 2048) -> float:
    """Return ``sum_ij exp(-|a_i - b_j|^2 / (2 h^2))`` over row blocks (float64)."""
    total = 0.0
    for start in range(0, a.shape[0], block):
        d2 = torch.cdist(a[start : start + block], b).square_()
        total += float(d2.mul_(-0.5 / bandwidth**2).exp_().sum())
    return total


def mmd_squared(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> float:
    """Return the unbiased squared maximum mean discrepancy between samples ``x`` and ``y``.

    ``x`` ``(N, D)`` and ``y`` ``(M, D)``, each with at least two rows; Gaussian kernel
    ``exp(-|x - y|^2 / (2 bandwidth^2))`` (``bandwidth`` in data units). The estimate
    ``sum_{i!=j} k(x_i, x_j) / (N(N-1)) + sum_{i!=j} k(y_i, y_j) / (M(M-1)) - 2 mean k(x_i, y_j)``
    is 0 in expectation when ``x`` and ``y`` come from one distribution (it can be slightly
    negative) and at most 2. Dimensionless (a squared RKHS norm of kernel values).
    """
    x = as_data_tensor(x, "x", max_rank=2).double()
    y = as_data_tensor(y, "y", max_rank=2).double()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} dimensions but y has {y.shape[1]}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"mmd_squared needs at least 2 rows on each side, got {x.shape[0]} and {y.shape[0]}")
    if not (isinstance(bandwidth, int | float) and math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    n, m = x.shape[0], y.shape[0]
    kxx = (_kernel_sum(x, x, bandwidth) - n) / (n * (n - 1))  # the diagonal's k(x_i, x_i) = 1 removed
    kyy = (_kernel_sum(y, y, bandwidth) - m) / (m * (m - 1))
    kxy = _kernel_sum(x, y, bandwidth) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def mixture_sample_metrics(data: Any, samples: torch.Tensor) -> dict[str, Any]:
    """Return every sample metric of a mixture :class:`~pyro_gen.data.DataSplit` (``ring``/``grid``).

    :func:`mode_metrics_for_data` (modes, high-quality share, KL, within-mode spread) plus
    ``mmd2`` (:func:`mmd_squared` of the samples against the test split, bandwidth
    ``mmd_bandwidth`` = the modes' ``std`` in data units), ``mmd2_floor`` (the same score for
    the first ``N`` training points against the test split, ``N`` = the number of samples: what
    data scores against data at these sizes) and ``mmd2_reference_rows`` (that ``N``).
    """
    out = mode_metrics_for_data(data, samples)
    std = float(data.info["std"])
    n = min(int(samples.shape[0]), int(data.train.shape[0]))
    out.update(
        mmd2=mmd_squared(samples, data.test, std),
        mmd2_floor=mmd_squared(data.train[:n], data.test, std),
        mmd_bandwidth=std,
        mmd2_reference_rows=n,
    )
    return out


# --------------------------------------------------------------------------------------
# Frechet distance on features of a small in-domain classifier
# --------------------------------------------------------------------------------------


class FeatureClassifier(nn.Module):
    """MLP classifier ``x (N, D) -> logits (N, num_classes)``; :meth:`features` is its last hidden layer."""

    def __init__(self, input_dim: int, num_classes: int = 10, hidden: int = 256, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim), nn.ReLU()
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.input_dim = input_dim
        self.accuracy_: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(N, num_classes)``."""
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, feature_dim)`` activations of the last hidden layer (no gradient)."""
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected images flattened to (N, {self.input_dim}), got {tuple(x.shape)}")
        return self.body(x)


class _LabelledRows(nn.Module):
    """The classifier's cross-entropy on rows ``[x, label]`` (the label in the last column)."""

    def __init__(self, classifier: FeatureClassifier):
        super().__init__()
        self.classifier = classifier

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the mean cross-entropy (nats per data point) of the batch's labels."""
        return F.cross_entropy(self.classifier(batch[:, :-1]), batch[:, -1].long())


def train_feature_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    test_images: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    hidden: int = 256,
    feature_dim: int = 64,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on flattened ``images`` ``(N, D)`` with integer ``labels``.

    Trained by the engine (minibatches of ``batch_size`` shuffled each epoch, Adam at ``lr``);
    the caller's random streams are restored afterwards. Returns it in eval mode;
    ``accuracy_`` is the held-out accuracy (fraction) when test data is given, else the
    training accuracy. Deterministic for a given ``seed``.
    """
    images = as_data_tensor(images, "images", max_rank=2)
    labels = torch.as_tensor(labels).long()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    from ..config import TrainConfig
    from ..inference.checkpoint import rng_state, set_rng_state
    from ..inference.engine import train
    from ..inference.loss import LossObjective

    saved = rng_state()  # the caller's random streams are left as they were
    try:
        torch.manual_seed(seed)
        clf = FeatureClassifier(images.shape[1], int(labels.max()) + 1, hidden, feature_dim)
        rows = torch.cat([images, labels.unsqueeze(1).to(images.dtype)], dim=1)
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
        train(LossObjective(_LabelledRows(clf), estimator="cross-entropy"), rows, config)
    finally:
        set_rng_state(saved)
    clf.eval()
    xe, ye = (test_images, test_labels) if test_images is not None else (images, labels)
    with torch.no_grad():
        clf.accuracy_ = float(
            (clf(torch.as_tensor(xe).float()).argmax(1) == torch.as_tensor(ye)).float().mean()
        )
    return clf


_CLASSIFIERS: dict[tuple, FeatureClassifier] = {}


def feature_classifier_for(data: Any, seed: int = 0, progress: bool = False) -> FeatureClassifier:
    """Return the feature classifier of an image :class:`~pyro_gen.data.DataSplit` (trained once, cached).

    Trained on the training images (grey levels, as loaded) and their labels; 10 epochs for
    small sets (digits), 3 for large ones (MNIST). ``ValueError`` when the split has no labels.
    """
    if data.train_labels is None:
        raise ValueError(f"data set {data.name!r} has no labels: cannot train a feature classifier")
    key = (data.name, tuple(data.train.shape), float(data.train.sum()), seed)
    if key not in _CLASSIFIERS:
        epochs = 10 if data.train.shape[0] < 10000 else 3
        _CLASSIFIERS[key] = train_feature_classifier(
            data.train,
            data.train_labels,
            test_images=data.test,
            test_labels=data.test_labels,
            epochs=epochs,
            seed=seed,
            progress=progress,
        )
    return _CLASSIFIERS[key]


def frechet_distance_gaussians(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Return the squared 2-Wasserstein (Frechet) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``.

    ``|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^{1/2})``, in squared feature units;
    the trace of the matrix square root comes from symmetric eigendecompositions.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, float)), np.atleast_1d(np.asarray(mu2, float))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, float)), np.atleast_2d(np.asarray(cov2, float))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"shape mismatch: means {mu1.shape}, {mu2.shape}; covariances {cov1.shape}, {cov2.shape}"
        )
    # tr (S1 S2)^{1/2} = tr (S1^{1/2} S2 S1^{1/2})^{1/2}: the inner matrix is symmetric PSD, so
    # symmetric eigendecompositions give it exactly, also when the feature covariances are
    # singular (dead ReLU units), where scipy.linalg.sqrtm warns and loses accuracy.
    w1, v1 = np.linalg.eigh(cov1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    inner = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    tr_covmean = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean))


def frechet_distance(
    samples: torch.Tensor,
    reference: torch.Tensor,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Return the Frechet distance between ``samples`` and ``reference`` (each ``(N, D)``).

    ``features`` maps ``(N, D) -> (N, F)`` (e.g. ``feature_classifier_for(data).features``);
    without it the raw coordinates are used. Each side needs at least 2 rows. Units: squared
    feature units (0 for identical feature distributions).
    """
    samples = as_data_tensor(samples, "samples", max_rank=2)
    reference = as_data_tensor(reference, "reference", max_rank=2)
    if samples.shape[1] != reference.shape[1]:
        raise ValueError(
            f"samples have {samples.shape[1]} dimensions but the reference has {reference.shape[1]}"
        )
    if samples.shape[0] < 2 or reference.shape[0] < 2:
        raise ValueError("frechet_distance needs at least 2 samples on each side")
    fa = features(samples) if features is not None else samples
    fb = features(reference) if features is not None else reference
    a, b = fa.detach().double().numpy(), fb.detach().double().numpy()
    return frechet_distance_gaussians(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
