"""scikit-learn's 8x8 handwritten digits: the embedded default data set (no download)."""

from __future__ import annotations

import numpy as np
import torch

from .split import DataSplit, binarize_split


def load_digits(binarize: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> DataSplit:
    """Return the 1,797 digits scaled to [0, 1] as a fixed, stratified train/test split.

    ``binarize`` is ``None`` (grey levels 0..16 scaled to [0, 1]), ``"static"`` (one
    Bernoulli draw per pixel with a fixed seed) or ``"dynamic"`` (a fresh draw for every
    training minibatch; the test set is binarized once with ``seed``). The split is a
    function of ``seed`` and ``test_fraction`` only.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if binarize not in (None, "static", "dynamic"):
        raise ValueError(f"binarize must be None, 'static' or 'dynamic', got {binarize!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sk_load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    xtr, xte = torch.from_numpy(xtr), torch.from_numpy(xte)
    xtr, xte, transform = binarize_split(xtr, xte, binarize, seed)
    return DataSplit(
        name="digits",
        train=xtr,
        test=xte,
        shape=(8, 8),
        train_labels=torch.from_numpy(ytr),
        test_labels=torch.from_numpy(yte),
        batch_transform=transform,
        binarized=binarize is not None,
        num_levels=2 if binarize else 17,
        info={"binarize": binarize, "test_fraction": test_fraction, "seed": seed},
    )
