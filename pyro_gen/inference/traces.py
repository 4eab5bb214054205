"""Reading Pyro traces: how deep the plates nest, and log-densities summed per data point.

Pyro's traces sum a site's log-density over all its plates (``log_prob_sum``) or keep it
whole; importance sampling, the multi-sample bounds and the ArviZ conversion need it per
(draw, data point). These helpers are the one place that reshapes it.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample


def plate_nesting(*traces) -> int:
    """Return the number of nested vectorized plates used by the sample sites of ``traces``.

    A site inside plates at dims ``-1`` and ``-2`` gives 2; no plate gives 0. Plates without a
    dim (sequential ``pyro.plate`` loops) do not count.
    """
    dims = [
        -f.dim
        for trace in traces
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
        for f in site["cond_indep_stack"]
        if f.vectorized and f.dim is not None
    ]
    return max(dims, default=0)


def max_plate_nesting(
    model: Callable, guide: Callable | None, args: tuple = (), kwargs: dict | None = None
) -> int:
    """Return the plate nesting of one run of ``guide`` and ``model`` replayed on it (or ``model`` alone).

    Both programs are called with ``*args, **kwargs``; the result is the ``max_plate_nesting``
    that Pyro's vectorized ELBOs and importance sampling need.
    """
    kwargs = kwargs or {}
    if guide is None:
        return plate_nesting(poutine.trace(model).get_trace(*args, **kwargs))
    gtr = poutine.trace(guide).get_trace(*args, **kwargs)
    mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(*args, **kwargs)
    return plate_nesting(gtr, mtr)


def sum_log_prob(lp: torch.Tensor, draw_dim: int, data_dim: int | None = None) -> torch.Tensor:
    """Sum a site's batch log-density ``lp`` to ``(draws,)`` or, with ``data_dim``, ``(draws, N)``.

    ``draw_dim`` is the (negative) dim of the draw/particle plate and ``data_dim`` that of the
    data plate; every other batch dim is summed. ``lp`` may lack leading dims of size one
    (a site that does not depend on the draw); they are added before summing, and the result
    then has a draw dim of size one (broadcast by the caller).
    """
    need = -min(draw_dim, data_dim if data_dim is not None else 0)
    if lp.dim() < need:
        lp = lp.reshape((1,) * (need - lp.dim()) + tuple(lp.shape))
    if data_dim is None:
        lp = lp.movedim(lp.dim() + draw_dim, 0)
        return lp.reshape(lp.shape[0], -1).sum(-1)
    lp = lp.movedim((lp.dim() + draw_dim, lp.dim() + data_dim), (0, 1))
    return lp.reshape(lp.shape[0], lp.shape[1], -1).sum(-1)
