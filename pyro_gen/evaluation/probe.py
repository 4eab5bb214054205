"""Linear probe: how linearly separable are the classes in an encoder's features?

Train a multinomial logistic regression (scikit-learn) on the features of the training
split and report its accuracy on the test split. Works for any model with ``features(x)``
(autoencoders), or ``encode(x)`` returning a tensor or a ``(loc, scale)`` pair (the VAE: the
probe reads the encoder means), or a plain function ``x -> features``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


@torch.no_grad()
def encoder_features(model: Any, x: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    """Return ``(N, F)`` float64 features of the rows of ``x`` from ``model``'s encoder.

    Uses ``model.features`` if present, else ``model.encode`` (the first element when it
    returns a tuple, i.e. a VAE's encoder mean), else calls ``model`` itself.
    """
    if hasattr(model, "features"):
        fn: Callable = model.features
    elif hasattr(model, "encode"):
        fn = model.encode
    elif callable(model):
        fn = model
    else:
        raise ValueError(f"{type(model).__name__} has no encoder (features/encode) to probe")
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    out = []
    try:
        for start in range(0, x.shape[0], batch_size):
            f = fn(x[start : start + batch_size])
            if isinstance(f, tuple | list):
                f = f[0]
            out.append(f.detach().reshape(f.shape[0], -1).double().cpu())
    finally:
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()
    return torch.cat(out).numpy()


def linear_probe(
    model: Any,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    C: float = 1.0,
    max_iter: int = 2000,
    max_train: int | None = 10000,
    seed: int = 0,
) -> dict[str, float]:
    """Fit a logistic-regression probe on encoder features; return accuracies (fractions in [0, 1]).

    Features are standardised (``StandardScaler`` fitted on the training features) before a
    multinomial ``LogisticRegression(C=C)``. Returns ``accuracy`` (test), ``train_accuracy``
    and ``num_features``. Pass ``model=None`` to probe the raw inputs (the baseline). At most
    ``max_train`` training rows are used (a random subset drawn with ``seed``; MNIST's 60,000
    would make the raw-pixel probe take minutes); ``None`` uses all.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train_y is None or test_y is None:
        raise ValueError("a linear probe needs labels: this data set has none")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"features and labels differ in length: train {len(train_x)} vs {len(train_y)}, "
            f"test {len(test_x)} vs {len(test_y)}"
        )
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    if max_train is not None and len(train_x) > max_train:
        keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:max_train]
        train_x, train_y = train_x[keep], torch.as_tensor(train_y)[keep]
    if model is None:
        ftr, fte = train_x.double().numpy(), test_x.double().numpy()
    else:
        ftr, fte = encoder_features(model, train_x), encoder_features(model, test_x)
    ytr, yte = np.asarray(train_y), np.asarray(test_y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    clf.fit(ftr, ytr)
    return {
        "accuracy": float(clf.score(fte, yte)),
        "train_accuracy": float(clf.score(ftr, ytr)),
        "num_features": int(ftr.shape[1]),
    }


def probe_split(model: Any, data: Any, seed: int = 0, **kw) -> dict[str, float]:
    """Run :func:`linear_probe` on a :class:`~pyro_gen.data.DataSplit`'s train/test rows and labels.

    When the split binarizes minibatches dynamically (its test rows are binarized once), the
    training rows are binarized once too, with ``seed``, so both sides look alike.
    """
    train = data.train
    if data.batch_transform is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            train = data.batch_transform(train)
    return linear_probe(model, train, data.train_labels, data.test, data.test_labels, seed=seed, **kw)
