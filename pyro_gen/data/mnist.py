"""MNIST and Fashion-MNIST from local IDX files (gzip-compressed or raw); never downloads.

The IDX format (LeCun et al.): a big-endian header ``0x00 0x00 <dtype> <ndim>``, then
``ndim`` big-endian int32 sizes, then the values. Images are magic 2051 (ubyte, 3 dims),
labels magic 2049 (ubyte, 1 dim). Written by hand because no well-kept library on our
dependency list reads IDX without also downloading (torchvision is not available here).

A folder holds four files, each named in either of the two spellings in circulation,
``train-images-idx3-ubyte`` (LeCun's site) or ``train-images.idx3-ubyte`` (some mirrors and
Kaggle), with or without ``.gz``, in any mix; compression is read from the file's first
bytes, not from its name. Fashion-MNIST (Xiao et al. 2017) uses the same format and names.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .split import DataSplit, binarize_split

MNIST_ENV = "PYRO_GEN_MNIST"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MNIST_NAMES = ("mnist", "fashion-mnist")
GZIP_MAGIC = b"\x1f\x8b"
# (prefix, kind, IDX rank) of the four files; see :func:`idx_file_names` for the spellings.
_FILES = {
    "train": (("train", "images", 3), ("train", "labels", 1)),
    "test": (("t10k", "images", 3), ("t10k", "labels", 1)),
}


def idx_file_names(prefix: str, kind: str, rank: int) -> tuple[str, ...]:
    """Return the accepted file names of one IDX file, in the order they are looked for.

    ``idx_file_names("train", "images", 3)`` is ``train-images-idx3-ubyte.gz``,
    ``train-images-idx3-ubyte``, ``train-images.idx3-ubyte.gz``, ``train-images.idx3-ubyte``.
    """
    stems = (f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte")
    return tuple(name for stem in stems for name in (stem + ".gz", stem))


def dataset_name(directory: str | os.PathLike) -> str:
    """Return the data set name of an IDX folder: ``"fashion-mnist"`` when its own name contains
    "fashion" (any case), else ``"mnist"``.
    """
    name = Path(directory).resolve().name
    return "fashion-mnist" if "fashion" in name.lower() else "mnist"


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            raw = f.read()
        if raw[:2] == GZIP_MAGIC:
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error) as e:  # a truncated .gz raises EOFError / BadGzipFile
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{path}: cannot read IDX file ({reason})") from e


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file, gzip-compressed or raw (told by its first bytes), into a uint8 array.

    Raises ``ValueError`` naming the file when it cannot be read or decompressed, the magic
    number is wrong or unexpected, the type is not unsigned byte, or the file is shorter or
    longer than its header says.
    """
    path = Path(path)
    raw = _read_bytes(path)
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
        what = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
        raise ValueError(
            f"{path}: magic number {magic} ({what.get(magic, 'unknown')}), expected {expected_magic} "
            f"({what.get(expected_magic, 'unknown')})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, {header} expected)")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    if any(d < 0 for d in dims):
        raise ValueError(f"{path}: negative size in IDX header {tuple(dims)}")
    n_values = int(np.prod(dims, dtype=np.int64))
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


def find_idx_file(directory: str | os.PathLike, prefix: str, kind: str, rank: int) -> Path:
    """Return the path of one IDX file in ``directory`` under any accepted name (:func:`idx_file_names`).

    Raises ``FileNotFoundError`` naming the folder and the names looked for.
    """
    directory = Path(directory)
    names = idx_file_names(prefix, kind, rank)
    for name in names:
        if (directory / name).is_file():
            return directory / name
    dashed, dotted = names[1], names[3]
    raise FileNotFoundError(
        f"{directory}: no {prefix} {kind} file: looked for {dashed}[.gz] and {dotted}[.gz]"
    )


def read_mnist_split(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (N, H, W), labels uint8 (N,))`` of the ``train`` or ``test`` split.

    Raises ``FileNotFoundError`` when a file is missing and ``ValueError`` naming the file when
    it is unreadable, has the wrong shape, or the image and label counts disagree.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    img_path, lab_path = (find_idx_file(directory, *f) for f in _FILES[split])
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lab_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise ValueError(f"{img_path}: expected 3 dimensions (N, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{lab_path}: expected 1 dimension (N,), got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"count mismatch: {img_path} holds {images.shape[0]} images but {lab_path} "
            f"holds {labels.shape[0]} labels"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{img_path}: holds no images")
    return images, labels


def load_mnist(
    path: str | os.PathLike | None = None,
    binarize: str | None = "dynamic",
    seed: int = 0,
    name: str | None = None,
) -> DataSplit:
    """Load MNIST or Fashion-MNIST from the folder ``path`` (or ``$PYRO_GEN_MNIST``), pixels in [0, 1].

    Returns a :class:`DataSplit` of shape ``(N, H*W)`` (``(N, 784)`` for both sets) named
    ``name`` when given (``"mnist"`` or ``"fashion-mnist"``), else from the folder
    (:func:`dataset_name`). ``binarize``: ``"dynamic"`` (a fresh Bernoulli draw per training
    minibatch; the test set binarized once with ``seed``, as in the IWAE paper's
    evaluation), ``"static"`` (train and test binarized once with ``seed``) or ``None`` (grey
    levels).
    """
    if binarize not in (None, "static", "dynamic"):
        raise ValueError(f"binarize must be None, 'static' or 'dynamic', got {binarize!r}")
    if name is not None and name not in MNIST_NAMES:
        raise ValueError(f"name must be one of {', '.join(MNIST_NAMES)}, got {name!r}")
    if path is None or str(path) == "":
        path = os.environ.get(MNIST_ENV)
        if not path:
            raise ValueError(f"no MNIST folder given: pass a path (mnist:PATH) or set ${MNIST_ENV}")
    directory = Path(path)
    if not directory.exists():
        raise FileNotFoundError(f"MNIST folder {directory} does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"MNIST path {directory} is not a folder (give the folder of the IDX files)")
    xtr, ytr = read_mnist_split(directory, "train")
    xte, yte = read_mnist_split(directory, "test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(
            f"{directory}: train images are {xtr.shape[1]}x{xtr.shape[2]} but test images "
            f"{xte.shape[1]}x{xte.shape[2]}"
        )
    to_t = lambda a: torch.from_numpy(a.reshape(a.shape[0], -1).astype(np.float32) / 255.0)  # noqa: E731
    train, test = to_t(xtr), to_t(xte)
    train, test, transform = binarize_split(train, test, binarize, seed)
    return DataSplit(
        name=name or dataset_name(directory),
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
