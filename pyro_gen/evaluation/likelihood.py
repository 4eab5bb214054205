"""Importance-sampled log-likelihood: log p(x) ~= log (1/k) sum_i p(x, z_i) / q(z_i | x).

With ``k`` samples from the guide this is the IWAE bound (Burda et al. 2015): a lower bound
on log p(x) that increases with ``k`` and is consistent as ``k -> inf``; ``k = 1`` gives
the ELBO in expectation. Memory stays bounded by drawing the ``k`` samples in chunks and
combining them with a running log-sum-exp.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from ..data.checks import as_data_tensor
from ..inference.svi import resolve_pair
from ..inference.traces import max_plate_nesting as plate_nesting_of
from ..inference.traces import sum_log_prob
from ..models.base import DATA_PLATE


def per_point_log_prob(trace, batch_size: int, particle_dim: int) -> torch.Tensor:
    """Return the sample sites' log-densities of ``trace`` summed into ``(particles, batch_size)`` nats.

    Every sample site must lie in the ``"data"`` plate (``ValueError`` naming the site
    otherwise); a trace without sample sites gives zeros of shape ``(1, batch_size)``.
    """
    total: torch.Tensor | None = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
        if not frames:
            raise ValueError(
                f"site {name!r} is outside the '{DATA_PLATE}' plate: per-data-point importance "
                "sampling needs every sample site to be local to a data point"
            )
        lp = sum_log_prob(site["fn"].log_prob(site["value"]), particle_dim, frames[0].dim)
        total = lp if total is None else total + lp
    if total is None:
        return torch.zeros(1, batch_size)
    return total.expand(total.shape[0], batch_size)


@torch.no_grad()
def log_weights(
    model: Callable, guide: Callable, x: torch.Tensor, num_samples: int, max_plate_nesting: int | None = None
) -> torch.Tensor:
    """Return ``(num_samples, N)`` log importance weights log p(x_n, z) - log q(z | x_n) in nats."""
    if max_plate_nesting is None:
        max_plate_nesting = plate_nesting_of(model, guide, (x[:1],))
    particle_dim = -max_plate_nesting - 1
    plate = pyro.plate("_particles", num_samples, dim=particle_dim)
    guide_tr = poutine.trace(plate(guide)).get_trace(x)
    model_tr = poutine.trace(poutine.replay(plate(model), trace=guide_tr)).get_trace(x)
    n = x.shape[0]
    return per_point_log_prob(model_tr, n, particle_dim) - per_point_log_prob(guide_tr, n, particle_dim)


@torch.no_grad()
def importance_log_likelihood(
    model: Any,
    data: torch.Tensor,
    *,
    guide: Callable | None = None,
    k: int = 5000,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Estimate log p(x) per data point by importance sampling with ``k`` guide samples.

    Returns a dict: ``log_likelihood`` (mean over points, nats per data point),
    ``bits_per_dim`` (``-log_likelihood / (D ln 2)``), ``elbo`` (the mean single-sample
    log weight, nats per data point: an unbiased ELBO estimate), ``k``, ``num_points`` and
    ``per_point`` (a ``(N,)`` tensor of the estimates). Samples are drawn ``chunk_size`` at a
    time for ``batch_size`` points so that about ``memory_budget`` bytes of decoder output
    are alive at once: by default 4 MiB on the CPU (cache-sized blocks: measured 2.3x faster
    than 256 MiB blocks for the 784-200-200-50 VAE, k=2000, 2 threads) and 256 MiB on an
    accelerator (large blocks keep it busy).
    """
    from tqdm.auto import tqdm

    data = as_data_tensor(data, "data")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    model_fn, guide_fn, module = resolve_pair(model, guide)
    if hasattr(model, "check_data"):
        model.check_data(data)
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    n, d = data.shape[0], int(data[0].numel())
    # data stay where they are; each batch moves to the module's device (one copy per batch)
    device = (
        next(module.parameters()).device
        if module is not None and any(True for _ in module.parameters())
        else data.device
    )
    if memory_budget is None:
        memory_budget = 2**22 if device.type == "cpu" else 2**28
    if batch_size is None:
        batch_size = max(1, min(n, memory_budget // (4 * d * min(k, 64))))
    if chunk_size is None:
        chunk_size = max(1, min(k, memory_budget // (4 * d * batch_size)))
    nesting = plate_nesting_of(model_fn, guide_fn, (data[:1].to(device),))
    ll = torch.empty(n, dtype=torch.float64)
    elbo = torch.empty(n, dtype=torch.float64)
    bar = tqdm(total=n, disable=not progress, desc=f"IS k={k}", unit="pt", leave=False)
    try:
        for start in range(0, n, batch_size):
            xb = data[start : start + batch_size].to(device)
            # accumulated on the device: one device-to-host copy per batch, not per chunk
            acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=device)
            wsum = torch.zeros(xb.shape[0], dtype=torch.float64, device=device)
            done = 0
            while done < k:
                m = min(chunk_size, k - done)
                lw = log_weights(model_fn, guide_fn, xb, m, nesting).double()
                acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
                wsum += lw.sum(0)
                done += m
            ll[start : start + xb.shape[0]] = (acc - math.log(k)).cpu()
            elbo[start : start + xb.shape[0]] = (wsum / k).cpu()
            bar.update(xb.shape[0])
    finally:
        bar.close()
        if module is not None and was_training:
            module.train()
    mean_ll = float(ll.mean())
    return {
        "log_likelihood": mean_ll,
        "bits_per_dim": -mean_ll / (d * math.log(2)),
        "elbo": float(elbo.mean()),
        "k": k,
        "num_points": n,
        "per_point": ll,
    }
