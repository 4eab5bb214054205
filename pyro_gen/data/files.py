"""A user's own data set from one file: ``.npy``, ``.npz``, ``.csv`` or ``.pt``, split by seed.

The file holds one array of shape ``(N, D)`` (or ``(N, C, H, W)``; a vector of shape ``(N,)``
is one column). A ``.npz`` or ``.pt`` file holds that array (a ``.pt`` file a tensor), or a
mapping with one array, or with the arrays ``train`` and ``test`` (then used as the split as
they are). A ``.csv`` file holds numbers separated by commas, one data point per row, with an
optional header row of column names; a cell that is not a number is refused naming its row
and column. Every array is checked at the boundary
(:func:`~pyro_gen.data.checks.as_data_tensor`: numbers only, no NaN or inf, not empty, rank 1
to 4) and becomes float32. Without ``train``/``test`` arrays, :data:`TEST_FRACTION` (20%) of
the rows, drawn at random with the seed, are held out as the test set.
"""

from __future__ import annotations

import csv
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checks import as_data_tensor
from .split import DataSplit, binarize_split

SUFFIXES = (".npy", ".npz", ".csv", ".pt")
TEST_FRACTION = 0.2
"""The share of a file's rows held out as the test set (at least one row, at least one kept)."""


def is_data_file(spec: str) -> bool:
    """Return True when the data spec ``spec`` names a file by its suffix (``.npy .npz .csv .pt``)."""
    return str(spec).lower().endswith(SUFFIXES)


def _read_csv(path: Path) -> np.ndarray:
    """Return the numbers of a CSV file as a float64 array (``ValueError`` naming a bad cell)."""
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    if not rows:
        raise ValueError(f"data file {path} is empty: need at least one data point")

    def numbers(row: list[str]) -> list[float] | None:
        try:
            return [float(c) for c in row]
        except ValueError:
            return None

    start = 1 if numbers(rows[0]) is None else 0  # a header of column names
    width = len(rows[0])
    values = []
    for i, row in enumerate(rows[start:], start=start + 1):
        if len(row) != width:
            raise ValueError(f"data file {path}: row {i} has {len(row)} columns, the first row {width}")
        parsed = numbers(row)
        if parsed is None:
            j = next(j for j, c in enumerate(row) if numbers([c]) is None)
            raise ValueError(f"data file {path}: row {i}, column {j + 1} is not a number ({row[j]!r})")
        values.append(parsed)
    if not values:
        raise ValueError(f"data file {path} holds a header and no data rows")
    return np.asarray(values, dtype=np.float64)


def _one_array(obj: Any, path: Path) -> Any | dict[str, Any]:
    """Return the single array of a mapping, or ``{"train", "test"}``; ``ValueError`` otherwise."""
    if not isinstance(obj, dict) and not hasattr(obj, "files"):
        return obj
    keys = list(obj.files if hasattr(obj, "files") else obj.keys())
    if "train" in keys and "test" in keys:
        return {"train": obj["train"], "test": obj["test"]}
    if len(keys) == 1:
        return obj[keys[0]]
    raise ValueError(
        f"data file {path} holds {len(keys)} arrays ({', '.join(map(str, keys[:6]))}): give one array, "
        "or two named 'train' and 'test'"
    )


def read_data_file(path: str | os.PathLike) -> Any:
    """Return the raw content of a data file: an array or tensor, or ``{"train": ..., "test": ...}``.

    ``FileNotFoundError`` when the file does not exist, ``ValueError`` (one line naming the file)
    when it cannot be read as its suffix says.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"data file {path}: the suffix must be one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    try:
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return _one_array(npz, path)
        return _one_array(torch.load(path, map_location="cpu", weights_only=True), path)
    except (ValueError, OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        if isinstance(e, ValueError) and str(e).startswith("data file"):
            raise
        if isinstance(e, FileNotFoundError):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"data file {path} cannot be read as {suffix} ({first})") from None


def _as_points(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a float32 tensor of data points (a vector becomes one column)."""
    if isinstance(x, np.ndarray | torch.Tensor) and x.ndim == 1:
        x = x.reshape(-1, 1)
    return as_data_tensor(x, name, min_rank=2, max_rank=4)


def load_data_file(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    binarize: str | None = None,
) -> DataSplit:
    """Return the data set in the file ``path`` as a :class:`DataSplit` (float32, values as stored).

    Without ``train``/``test`` arrays in the file, ``test_fraction`` of the rows (at least one)
    drawn by a permutation seeded with ``seed`` form the test set; the split depends only on
    ``seed``, ``test_fraction`` and the number of rows. ``binarize`` (``"static"`` or
    ``"dynamic"``) needs values in [0, 1]. The split's ``shape`` is one point's shape (``(D,)``
    for a table) and ``info`` records the file, the fraction and the seed. Raises
    ``ValueError`` with one line naming the file and the problem.
    """
    path = Path(path).expanduser()
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    raw = read_data_file(path)
    label = f"data file {path}"
    if isinstance(raw, dict):
        train, test = (
            _as_points(raw["train"], f"{label} ('train')"),
            _as_points(raw["test"], f"{label} ('test')"),
        )
        if train.shape[1:] != test.shape[1:]:
            raise ValueError(
                f"{label}: 'train' points have shape {tuple(train.shape[1:])}, 'test' points "
                f"{tuple(test.shape[1:])}"
            )
        fraction = None
    else:
        x = _as_points(raw, label)
        n = int(x.shape[0])
        if n < 2:
            raise ValueError(f"{label} has {n} data point: need at least 2 (one to train on, one to test)")
        n_test = min(n - 1, max(1, int(round(test_fraction * n))))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        train, test = x[perm[n_test:]], x[perm[:n_test]]
        fraction = test_fraction
    shape = tuple(int(s) for s in train.shape[1:])
    train, test = train.reshape(train.shape[0], -1), test.reshape(test.shape[0], -1)
    if binarize not in (None, "none"):
        if binarize not in ("static", "dynamic"):
            raise ValueError(f"binarize must be None, 'static' or 'dynamic', got {binarize!r}")
        for part, name in ((train, "train"), (test, "test")):
            lo, hi = float(part.min()), float(part.max())
            if lo < 0.0 or hi > 1.0:
                raise ValueError(
                    f"{label}: --binarize {binarize} needs values in [0, 1], the {name} rows have "
                    f"[{lo:.4g}, {hi:.4g}] (use --binarize none)"
                )
        train, test, transform = binarize_split(train, test, binarize, seed)
    else:
        binarize, transform = None, None
    return DataSplit(
        name=path.stem,
        train=train.contiguous(),
        test=test.contiguous(),
        shape=shape,
        batch_transform=transform,
        binarized=binarize is not None,
        info={
            "file": str(path.resolve()),
            "test_fraction": fraction,
            "seed": int(seed),
            "binarize": binarize,
        },
    )
