"""MNIST from local IDX files (``.gz`` or raw); never downloads.

The IDX format (LeCun et al.): a big-endian header ``0x00 0x00 <dtype> <ndim>``, then
``ndim`` big-endian int32 sizes, then the values. Images are magic 2051 (ubyte, 3 dims),
labels magic 2049 (ubyte, 1 dim). Written by hand because no well-kept library on our
dependency list reads IDX without also downloading (torchvision is not available here).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from .split import DataSplit, binarize_split

MNIST_ENV = "PYRO_GEN_MNIST"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip-compressed when its name ends in ``.gz``) into a uint8 array.

    Raises ``ValueError`` naming the file when the magic number is wrong or unexpected, the
    type is not unsigned byte, or the file is shorter or longer than its header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # a truncated .gz raises EOFError / BadGzipFile
        raise ValueError(f"{path}: cannot read IDX file ({e})") from e
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    magic = struct.unpack(">i", raw[:4])[0]
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise ValueError(
            f"{path}: bad IDX magic number {magic} (expected an unsigned-byte IDX file, "
            f"e.g. {IMAGES_MAGIC} for images or {LABELS_MAGIC} for labels)"
        )
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: magic number {magic}, expected {expected_magic}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    n_values = int(np.prod(dims))
    body = len(raw) - header
    if body != n_values:
        kind = "truncated" if body < n_values else "has trailing bytes"
        raise ValueError(
            f"{path}: {kind}: header promises shape {tuple(dims)} = {n_values} values, file holds {body}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "i" * array.ndim, *array.shape)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {directory}")


def read_mnist_split(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (N, 28, 28), labels uint8 (N,))`` of the ``train`` or ``test`` split.

    Raises ``ValueError`` when the image and label counts disagree.
    """
    directory = Path(directory)
    img_path, lab_path = (_find(directory, s) for s in _FILES[split])
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lab_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise ValueError(f"{img_path}: expected 3 dimensions (N, H, W), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{lab_path}: expected 1 dimension (N,), got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"count mismatch: {img_path} holds {images.shape[0]} images but {lab_path} "
            f"holds {labels.shape[0]} labels"
        )
    return images, labels


def load_mnist(
    path: str | os.PathLike | None = None, binarize: str | None = "dynamic", seed: int = 0
) -> DataSplit:
    """Load MNIST from ``path`` (or ``$PYRO_GEN_MNIST``) as pixels in [0, 1], shape ``(N, 784)``.

    ``binarize``: ``"dynamic"`` (a fresh Bernoulli draw per training minibatch; the test set
    binarized once with ``seed``, as in the IWAE paper's evaluation), ``"static"`` (train and
    test binarized once with ``seed``) or ``None`` (grey levels).
    """
    if binarize not in (None, "static", "dynamic"):
        raise ValueError(f"binarize must be None, 'static' or 'dynamic', got {binarize!r}")
    if path is None:
        path = os.environ.get(MNIST_ENV)
        if not path:
            raise ValueError(f"no MNIST directory given: pass a path or set ${MNIST_ENV}")
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory {directory} does not exist")
    xtr, ytr = read_mnist_split(directory, "train")
    xte, yte = read_mnist_split(directory, "test")
    to_t = lambda a: torch.from_numpy(a.reshape(a.shape[0], -1).astype(np.float32) / 255.0)  # noqa: E731
    train, test = to_t(xtr), to_t(xte)
    train, test, transform = binarize_split(train, test, binarize, seed)
    return DataSplit(
        name="mnist",
        train=train,
        test=test,
        shape=(int(xtr.shape[1]), int(xtr.shape[2])),
        train_labels=torch.from_numpy(ytr.astype(np.int64)),
        test_labels=torch.from_numpy(yte.astype(np.int64)),
        batch_transform=transform,
        binarized=binarize is not None,
        num_levels=2 if binarize else 256,
        info={"path": str(directory), "binarize": binarize, "seed": seed},
    )
