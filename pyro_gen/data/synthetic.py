"""Generated data sets: 2-D rings and grids of Gaussians, two moons, sampled Gaussian mixtures."""

from __future__ import annotations

import math

import numpy as np
import torch

from .split import DataSplit


def _check_n(n: int, name: str = "num_samples") -> None:
    if not isinstance(n, int | np.integer) or n <= 0:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def ring_means(num_modes: int = 8, radius: float = 1.0) -> torch.Tensor:
    """Return the ``(num_modes, 2)`` means ``radius * (cos 2 pi i/K, sin 2 pi i/K)``."""
    angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_means(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """Return the ``(side**2, 2)`` means of a centred grid, {-4,-2,0,2,4}^2 by default."""
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def sample_gaussian_mixture(
    num_samples: int,
    means: torch.Tensor,
    scales: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(x (N, D), component index (N,))`` from a Gaussian mixture.

    ``scales`` is a scalar (isotropic standard deviation), a ``(K,)`` vector of isotropic
    standard deviations, or ``(K, D, D)`` covariance Cholesky factors.
    """
    _check_n(num_samples)
    means = torch.as_tensor(means, dtype=torch.float32)
    if means.dim() != 2 or means.shape[0] == 0:
        raise ValueError(f"means must have shape (K, D) with K >= 1, got {tuple(means.shape)}")
    k, d = means.shape
    if weights is None:
        weights = torch.full((k,), 1.0 / k)
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.shape != (k,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum")
    g = torch.Generator().manual_seed(seed)
    z = torch.multinomial(weights / weights.sum(), num_samples, replacement=True, generator=g)
    eps = torch.randn(num_samples, d, generator=g)
    scales = torch.as_tensor(scales, dtype=torch.float32)
    if scales.dim() == 0:
        x = means[z] + scales * eps
    elif scales.shape == (k,):
        x = means[z] + scales[z, None] * eps
    elif scales.shape == (k, d, d):
        x = means[z] + torch.einsum("nij,nj->ni", scales[z], eps)
    else:
        raise ValueError(f"scales must be a scalar, ({k},) or ({k}, {d}, {d}); got {tuple(scales.shape)}")
    return x, z


def _split(name, x, y, num_test, info) -> DataSplit:
    return DataSplit(
        name=name,
        train=x[num_test:],
        test=x[:num_test],
        shape=(x.shape[1],),
        train_labels=y[num_test:],
        test_labels=y[:num_test],
        info=info,
    )


def ring_of_gaussians(
    num_samples: int = 10000,
    num_modes: int = 8,
    radius: float = 1.0,
    std: float = 0.01,
    num_test: int = 2500,
    seed: int = 0,
) -> DataSplit:
    """A ring of ``num_modes`` equal-weight Gaussians (PacGAN's setup: radius 1, std 0.01)."""
    _check_n(num_test, "num_test")
    x, z = sample_gaussian_mixture(num_samples + num_test, ring_means(num_modes, radius), std, seed=seed)
    info = {"means": ring_means(num_modes, radius).tolist(), "std": std, "seed": seed}
    return _split("ring", x, z, num_test, info)


def grid_of_gaussians(
    num_samples: int = 10000,
    side: int = 5,
    spacing: float = 2.0,
    std: float = 0.05,
    num_test: int = 2500,
    seed: int = 0,
) -> DataSplit:
    """A ``side x side`` grid of equal-weight Gaussians (PacGAN's setup: {-4..4}^2, std 0.05)."""
    _check_n(num_test, "num_test")
    means = grid_means(side, spacing)
    x, z = sample_gaussian_mixture(num_samples + num_test, means, std, seed=seed)
    return _split("grid", x, z, num_test, {"means": means.tolist(), "std": std, "seed": seed})


def two_moons(
    num_samples: int = 10000, noise: float = 0.05, num_test: int = 2500, seed: int = 0
) -> DataSplit:
    """scikit-learn's ``make_moons`` in its own coordinates (not rescaled), train/test split."""
    from sklearn.datasets import make_moons

    _check_n(num_samples)
    _check_n(num_test, "num_test")
    x, y = make_moons(num_samples + num_test, noise=noise, random_state=seed)
    x, y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    return _split("moons", x, y, num_test, {"noise": noise, "seed": seed})
