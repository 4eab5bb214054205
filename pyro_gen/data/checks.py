"""Validation at the data boundary: every loader and `fit` call these before trusting an array."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_FLOATS = (torch.float32, torch.float64)


def _describe(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__name__}".removeprefix("builtins.")


def as_data_tensor(
    x: Any,
    name: str = "data",
    *,
    min_rank: int = 2,
    max_rank: int = 4,
    dtype: torch.dtype | None = torch.float32,
) -> torch.Tensor:
    """Return ``x`` (a tensor or NumPy array) as a ``dtype`` tensor after checking it is a usable data set.

    Conversions: floating arrays and tensors of any precision (NumPy's default float64
    included) become ``dtype`` (float32 by default, the precision of the networks);
    integer and bool arrays, such as 0/1 pixels or 0..255 grey levels, are converted value
    for value (never rescaled: a model that needs [0, 1] says so through
    :func:`check_unit_interval`). ``dtype=None`` keeps float32 and float64 as given (for
    float64 estimators) and turns everything else into float32. A float32 tensor is
    returned as is, a float32 NumPy array shares its memory.

    Raises ``ValueError`` naming ``name`` when ``x`` is not a tensor or array, holds no
    numbers (strings, objects, complex values), is empty, has a rank outside ``[min_rank,
    max_rank]`` (data is ``(N, D)`` or ``(N, C, H, W)``), or holds NaN/inf.
    """
    if dtype is not None and dtype not in _FLOATS:
        raise ValueError(f"dtype must be torch.float32, torch.float64 or None, got {dtype}")
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiub":  # float, signed, unsigned, bool
            raise ValueError(
                f"{name} must hold numbers (float, integer or bool), got a NumPy array of dtype {x.dtype}"
            )
        if x.dtype.kind == "f" and dtype is None and x.dtype in (np.float32, np.float64):
            target = x.dtype.newbyteorder("=")
        else:
            target = np.dtype(np.float64 if dtype is torch.float64 else np.float32)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=target))
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or a NumPy array, got {_describe(x)}")
    if x.is_complex():
        raise ValueError(f"{name} must hold real numbers, got a tensor of dtype {x.dtype}")
    if x.dim() < min_rank or x.dim() > max_rank:
        ranks = str(min_rank) if min_rank == max_rank else f"{min_rank}..{max_rank}"
        shapes = "(N, D)" if max_rank <= 2 else "(N, D) or (N, C, H, W)"
        raise ValueError(f"{name} must have rank {ranks} {shapes}; got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): need at least one data point")
    target_dtype = dtype if dtype is not None else (x.dtype if x.dtype in _FLOATS else torch.float32)
    if x.dtype != target_dtype:
        x = x.to(target_dtype)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s), first at index {idx}")
    return x


def check_unit_interval(x: torch.Tensor, name: str = "data") -> None:
    """Raise ``ValueError`` when ``x`` has values outside [0, 1] (a Bernoulli's support); return None."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        hint = ""
        if lo >= 0.0 and hi <= 255.0 and bool((x == x.round()).all()):
            hint = " (grey levels 0..255? divide by 255)"
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]{hint}: a Bernoulli likelihood "
            "needs data scaled to [0, 1] (use likelihood='gaussian' for unbounded data)"
        )
