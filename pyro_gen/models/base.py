"""What every pyro-gen model shares: the data plate that makes minibatch ELBOs unbiased.

A model writes ``with data_plate(x): ...`` around its per-data-point sites. Outside a
training loop the plate covers ``x`` exactly (scale 1). Inside :func:`minibatch` (which
``fit`` enters for every step) the plate is ``pyro.plate("data", N, subsample=idx)``: its
log-density terms are scaled by ``N / len(idx)``, so the minibatch ELBO is an unbiased
estimate of the full-data ELBO while global latents are counted once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pyro
import torch

DATA_PLATE = "data"

_state = threading.local()


@contextlib.contextmanager
def minibatch(num_data: int, indices: torch.Tensor) -> Iterator[None]:
    """Declare that the next model/guide calls see rows ``indices`` of a data set of size ``num_data``."""
    previous = getattr(_state, "current", None)
    _state.current = (int(num_data), indices)
    try:
        yield
    finally:
        _state.current = previous


def current_minibatch() -> tuple[int, torch.Tensor] | None:
    """Return ``(num_data, indices)`` of the enclosing :func:`minibatch`, or None outside one."""
    return getattr(_state, "current", None)


def data_plate(x: torch.Tensor, dim: int = -1) -> pyro.plate:
    """Return the ``pyro.plate("data", ...)`` over the rows of ``x`` (see the module docstring)."""
    current = getattr(_state, "current", None)
    if current is None or len(current[1]) != x.shape[0]:
        return pyro.plate(DATA_PLATE, x.shape[0], dim=dim)
    num_data, indices = current
    return pyro.plate(DATA_PLATE, num_data, subsample=indices, dim=dim)
