"""Validation at the data boundary: every loader and `fit` call these before trusting an array."""

from __future__ import annotations

import numpy as np
import torch


def as_data_tensor(x, name: str = "data", *, min_rank: int = 2, max_rank: int = 4) -> torch.Tensor:
    """Return ``x`` as a float32 tensor after checking it is usable as a data set.

    Raises ``ValueError`` naming ``name`` when the array is empty, has a rank outside
    ``[min_rank, max_rank]`` (data is ``(N, D)`` or ``(N, C, H, W)``), or holds NaN/inf.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() < min_rank or x.dim() > max_rank:
        raise ValueError(
            f"{name} must have rank {min_rank}..{max_rank} (N, D) or (N, C, H, W); got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): need at least one data point")
    if not x.is_floating_point():
        x = x.float()
    elif x.dtype != torch.float32 and x.dtype != torch.float64:
        x = x.float()
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s), first at index {idx}")
    return x


def check_unit_interval(x: torch.Tensor, name: str = "data") -> None:
    """Raise ``ValueError`` when ``x`` has values outside [0, 1] (a Bernoulli's support)."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: a Bernoulli likelihood "
            "needs data scaled to [0, 1] (use likelihood='gaussian' for unbounded data)"
        )
