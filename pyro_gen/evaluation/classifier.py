"""Counting a generator's modes with a digit classifier (stacked MNIST: 1000 modes).

Metz et al. (2017), Srivastava et al. (VEEGAN, 2017) and Lin et al. (PacGAN, 2018) measure mode
collapse on *stacked MNIST*: three MNIST digits as the three channels of one 28x28 image, so
there are 10^3 = 1000 modes. A classifier trained on MNIST labels each channel of a generated
image; the three digits give its mode ``100 d_0 + 10 d_1 + d_2``. Two numbers summarize the
labelled samples:

* ``modes_captured``: how many of the 1000 modes are hit by at least one sample;
* ``kl_to_uniform``: ``KL(p || u) = sum_m p_m log(p_m / u_m)`` in nats, ``p`` the samples' mode
  frequencies and ``u`` uniform over all modes. Empty modes contribute nothing (``0 log 0 =
  0``), so the KL is ``log K - H(p)``: 0 for perfectly balanced samples, ``log 1000 = 6.91``
  when every sample falls in one mode. This is the direction and the handling of empty modes
  of PacGAN's own evaluation code (its ``KLD(p, q)`` skips ``p = 0``).

The classifier (:class:`DigitClassifier`) is a small CNN trained here on the MNIST training
set (:func:`train_digit_classifier`, deterministic for a seed); its test accuracy is reported
beside the counts, because every misclassified channel moves a sample to another mode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: settings of the classifier trained by :func:`digit_classifier_for` unless given
CLASSIFIER_EPOCHS = 3
CLASSIFIER_BATCH = 128
CLASSIFIER_LR = 1e-3


class DigitClassifier(nn.Module):
    """A small CNN for 28x28 digits: ``(B, 784)`` or ``(B, 1, 28, 28)`` in [0, 1] -> logits ``(B, 10)``.

    Two 3x3 convolutions (32 and 64 channels, ReLU, each followed by 2x2 max pooling), a
    hidden layer of 128 units with dropout 0.25 (active in training mode only), and a linear
    layer to the 10 classes. About 99% test accuracy on MNIST after three epochs.
    """

    def __init__(self, num_classes: int = 10, side: int = 28):
        super().__init__()
        if side % 4 != 0:
            raise ValueError(f"the digit classifier needs a side divisible by 4, got {side}")
        self.side = side
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (side // 4) ** 2, 128),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(128, num_classes),
        )
        self.accuracy_: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits ``(B, num_classes)`` of single-channel images."""
        return self.net(x.reshape(-1, 1, self.side, self.side))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Return the most likely class ``(B,)`` (int64) of each image, in eval mode, in batches."""
        was_training = self.training
        self.eval()
        try:
            out = [self(x[i : i + batch_size]).argmax(-1) for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def classifier_accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the fraction (0-1) of ``images`` whose predicted class is their label."""
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(
            f"need as many labels as images (at least one), got {images.shape[0]} and {labels.shape[0]}"
        )
    return float((classifier.predict(images) == labels.to(torch.long)).double().mean())


def train_digit_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = CLASSIFIER_EPOCHS,
    batch_size: int = CLASSIFIER_BATCH,
    lr: float = CLASSIFIER_LR,
    seed: int = 0,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on ``images`` ``(N, 784)`` in [0, 1] and ``labels`` ``(N,)``.

    Adam at ``lr``, cross-entropy, ``epochs`` shuffled passes of ``batch_size``; the weights,
    the shuffling and dropout follow ``seed`` (the caller's torch random stream is left as it
    was). With ``test = (images, labels)`` the classifier's ``accuracy_`` is its accuracy
    there (0-1), else on the training images. Returned in eval mode.
    """
    if images.dim() != 2 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(
            f"need images (N, D) and labels (N,), N >= 1; got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1]:
        raise ValueError(f"images must be flattened squares, got {images.shape[1]} values per image")
    labels = labels.to(torch.long)
    num_classes = max(10, int(labels.max()) + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clf = DigitClassifier(num_classes, side)
        opt = torch.optim.Adam(clf.parameters(), lr=lr)
        clf.train()
        n = images.shape[0]
        for _ in range(epochs):
            order = torch.randperm(n)
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                loss = nn.functional.cross_entropy(clf(images[idx]), labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    clf.eval()
    x, y = test if test is not None else (images, labels)
    clf.accuracy_ = classifier_accuracy(clf, x, y)
    return clf


_CACHE: dict[tuple, DigitClassifier] = {}


def digit_classifier_for(
    mnist_path: str | os.PathLike, *, epochs: int = CLASSIFIER_EPOCHS, seed: int = 0
) -> DigitClassifier:
    """Return a :class:`DigitClassifier` trained on the MNIST training set in the folder ``mnist_path``.

    Its ``accuracy_`` is the MNIST test-set accuracy (0-1). Trained once per process for each
    (folder, epochs, seed) and kept; deterministic for a seed.
    """
    from ..data.mnist import read_mnist_split

    key = (str(os.path.abspath(mnist_path)), epochs, seed)
    if key not in _CACHE:

        def as_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = read_mnist_split(mnist_path, split)
            flat = torch.from_numpy(x.reshape(x.shape[0], -1).copy()).float() / 255.0
            return flat, torch.from_numpy(y.astype("int64"))

        _CACHE[key] = train_digit_classifier(
            *as_tensors("train"), epochs=epochs, seed=seed, test=as_tensors("test")
        )
    return _CACHE[key]


def modes_from_digits(digits: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Return the mode index ``(N,)`` of digit tuples ``(N, C)``: the digits read in base ``num_classes``.

    ``(d_0, d_1, d_2)`` is mode ``100 d_0 + 10 d_1 + d_2`` (first channel most significant).
    """
    if digits.dim() != 2:
        raise ValueError(f"digits must be (N, C), got shape {tuple(digits.shape)}")
    if digits.numel() and (int(digits.min()) < 0 or int(digits.max()) >= num_classes):
        raise ValueError(
            f"digits must lie in [0, {num_classes}), got {int(digits.min())}..{int(digits.max())}"
        )
    weights = num_classes ** torch.arange(digits.shape[1] - 1, -1, -1, dtype=torch.long)
    return (digits.to(torch.long) * weights).sum(-1)


def classify_channels(classifier: DigitClassifier, images: torch.Tensor, channels: int) -> torch.Tensor:
    """Return the predicted digit of every channel, ``(N, channels)``, of flattened channel-major
    images ``(N, channels * side*side)``."""
    if images.dim() != 2 or images.shape[1] % channels != 0:
        raise ValueError(f"images must be (N, {channels} * side*side), got shape {tuple(images.shape)}")
    n = images.shape[0]
    per_channel = images.reshape(n * channels, images.shape[1] // channels)
    return classifier.predict(per_channel).reshape(n, channels)


def mode_coverage(modes: torch.Tensor | Sequence[int], num_modes: int) -> dict[str, Any]:
    """Return ``modes_captured`` (modes hit at least once) and ``kl_to_uniform`` (nats) of mode labels.

    ``kl_to_uniform`` is ``sum_m p_m log(p_m num_modes)`` over the modes with ``p_m > 0``
    (``p`` the labels' frequencies): 0 when every mode holds the same share, ``log num_modes``
    when all labels are one mode. Also ``num_modes`` and ``num_samples``. ``ValueError`` for no
    labels or a label outside ``[0, num_modes)``.
    """
    modes = torch.as_tensor(modes, dtype=torch.long).reshape(-1)
    if modes.numel() == 0:
        raise ValueError("no mode labels: cannot count modes")
    if int(modes.min()) < 0 or int(modes.max()) >= num_modes:
        raise ValueError(
            f"mode labels must lie in [0, {num_modes}), got {int(modes.min())}..{int(modes.max())}"
        )
    counts = torch.bincount(modes, minlength=num_modes).double()
    p = counts[counts > 0] / modes.numel()
    kl = float((p * (p * num_modes).log()).sum())
    return {
        "modes_captured": int((counts > 0).sum()),
        "kl_to_uniform": max(kl, 0.0),
        "num_modes": int(num_modes),
        "num_samples": int(modes.numel()),
    }


def stacked_mode_metrics(
    samples: torch.Tensor, classifier: DigitClassifier, channels: int = 3, num_classes: int = 10
) -> dict[str, Any]:
    """Return the mode coverage (:func:`mode_coverage`) of stacked-digit ``samples`` ``(N, channels*784)``.

    Each channel is labelled by ``classifier``; ``num_classes ** channels`` modes. Adds
    ``classifier_test_accuracy`` (the classifier's ``accuracy_``, 0-1) when known.
    """
    digits = classify_channels(classifier, samples.detach().float().cpu(), channels)
    out = mode_coverage(modes_from_digits(digits, num_classes), num_classes**channels)
    if classifier.accuracy_ is not None:
        out["classifier_test_accuracy"] = classifier.accuracy_
    return out
