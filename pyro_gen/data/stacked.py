"""Stacked MNIST: three MNIST digits as the three channels of one 28x28 image (1000 modes).

The benchmark of mode collapse of Metz et al. (2017), VEEGAN (Srivastava et al. 2017) and
PacGAN (Lin et al. 2018, Table 2). Each stacked image draws ``channels`` MNIST images uniformly
at random with replacement and puts them on the channel axis; its label (its *mode*) is the
digits read in base 10, ``100 d_0 + 10 d_1 + d_2``, so 3 channels give 1000 modes of (almost)
equal weight.

:func:`load_stacked_mnist` builds the set from the IDX files of an MNIST folder,
deterministically: the draws follow a fixed ``seed`` (0 unless given), never the training
seed, so every run on ``stacked-mnist:PATH`` sees the same images. The training images are
stacked from MNIST's training split and the test images from its test split. Images are
flattened channel-major (``(N, 3 * 784)``, channel ``c`` the block ``[784 c, 784 (c + 1))``),
``shape`` is ``(3, 28, 28)``, pixels in [0, 1] (grey levels).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .split import DataSplit

NAME = "stacked-mnist"
#: stacked training images: PacGAN's 128,000 (its code's ``num_training_sample``)
TRAIN_SIZE = 128_000
TEST_SIZE = 10_000
CHANNELS = 3


def stack_images(
    images: np.ndarray, labels: np.ndarray, num: int, channels: int = CHANNELS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(stacked, modes, digits)``: ``num`` stacks of ``channels`` images drawn uniformly with
    replacement from ``images`` ``(M, H, W)`` (uint8 or float).

    ``stacked`` is ``(num, channels, H, W)`` of the images' dtype, ``digits`` ``(num, channels)``
    the labels of the drawn images and ``modes`` ``(num,)`` those digits read in base 10 (first
    channel most significant). Deterministic for ``seed`` (numpy's PCG64).
    """
    if images.ndim != 3 or labels.shape != (images.shape[0],) or images.shape[0] == 0:
        raise ValueError(
            f"need images (M, H, W) and labels (M,), M >= 1; got {images.shape} and {labels.shape}"
        )
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"labels must be digits 0-9, got {labels.min()}..{labels.max()}")
    idx = np.random.default_rng(seed).integers(0, images.shape[0], size=(num, channels))
    digits = labels[idx].astype(np.int64)
    modes = digits @ (10 ** np.arange(channels - 1, -1, -1, dtype=np.int64))
    return images[idx], modes, digits


def load_stacked_mnist(
    path: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    channels: int = CHANNELS,
) -> DataSplit:
    """Return stacked MNIST built from the MNIST IDX folder ``path`` (or ``$PYRO_GEN_MNIST``).

    A :class:`DataSplit` named ``stacked-mnist``: ``train`` ``(train_size, channels * 784)``
    stacked from MNIST's training images, ``test`` ``(test_size, channels * 784)`` from its test
    images (sizes default to :data:`TRAIN_SIZE` and :data:`TEST_SIZE`, read at the call), pixels
    in [0, 1], ``shape`` ``(channels, 28, 28)``; ``train_labels`` /
    ``test_labels`` the modes (``0 .. 10**channels - 1``). ``info`` holds the MNIST folder
    (``path``), ``channels``, ``num_modes``, ``seed`` and ``stacked: True``. The test draws use
    ``seed + 1``. Never binarized.
    """
    from .mnist import MNIST_ENV, read_mnist_split

    if path is None or str(path) == "":
        path = os.environ.get(MNIST_ENV)
        if not path:
            raise ValueError(f"no MNIST folder given: pass stacked-mnist:PATH or set ${MNIST_ENV}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"MNIST folder {path} does not exist or is not a folder")
    train_size = TRAIN_SIZE if train_size is None else train_size
    test_size = TEST_SIZE if test_size is None else test_size
    xtr, ytr = read_mnist_split(path, "train")
    xte, yte = read_mnist_split(path, "test")

    def build(x: np.ndarray, y: np.ndarray, num: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        stacked, modes, _ = stack_images(x, y, num, channels, s)
        flat = torch.from_numpy(stacked.reshape(num, -1))
        return flat.to(torch.float32).div_(255.0), torch.from_numpy(modes)

    train, train_modes = build(xtr, ytr, train_size, seed)
    test, test_modes = build(xte, yte, test_size, seed + 1)
    return DataSplit(
        name=NAME,
        train=train,
        test=test,
        shape=(channels, int(xtr.shape[1]), int(xtr.shape[2])),
        train_labels=train_modes,
        test_labels=test_modes,
        binarized=False,
        num_levels=256,
        info={
            "path": str(path),
            "channels": channels,
            "num_modes": 10**channels,
            "seed": seed,
            "stacked": True,
        },
    )
