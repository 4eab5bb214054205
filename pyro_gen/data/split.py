"""The one container every loader returns: a train/test split of tensors plus metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class DataSplit:
    """A fixed train/test split.

    ``train``/``test`` are float tensors of shape ``(N, D)``; ``shape`` is the shape of one
    data point as a person looks at it (``(8, 8)`` for digits, ``(28, 28)`` for MNIST,
    ``(2,)`` for 2-D sets). ``batch_transform`` (if set) is applied by the training loop to
    every minibatch, e.g. dynamic binarization. ``num_levels`` is the number of discrete
    intensity levels of the raw data (for bits/dim bookkeeping), ``None`` when continuous.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    shape: tuple[int, ...]
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    binarized: bool = False
    num_levels: int | None = None
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Number of dimensions of one flattened data point."""
        return int(self.train.shape[1])

    @property
    def is_image(self) -> bool:
        """True when one data point is an image (its shape has two axes)."""
        return len(self.shape) == 2


def bernoulli_binarize(x: torch.Tensor) -> torch.Tensor:
    """Dynamic binarization: one Bernoulli draw per pixel with the intensity as probability.

    Uses the global torch RNG, so it follows ``pyro.set_rng_seed``.
    """
    return torch.bernoulli(x)


def binarize_split(
    train: torch.Tensor, test: torch.Tensor, binarize: str | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor] | None]:
    """Return ``(train, test, batch_transform)`` for ``binarize`` None, "static" or "dynamic".

    The test set (and, for "static", the training set) is binarized once with ``seed``;
    "dynamic" leaves the training set in [0, 1] and returns :func:`bernoulli_binarize`.
    """
    if binarize is None:
        return train, test, None
    g = torch.Generator().manual_seed(seed)
    test = torch.bernoulli(test, generator=g)
    if binarize == "static":
        return torch.bernoulli(train, generator=g), test, None
    return train, test, bernoulli_binarize
