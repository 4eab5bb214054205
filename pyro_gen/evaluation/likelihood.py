"""Importance-sampled log-likelihood: log p(x) ~= log (1/k) sum_i p(x, z_i) / q(z_i | x).

With ``k`` samples from the guide this is the IWAE bound (Burda et al. 2015): a lower bound
on log p(x) that increases with ``k`` and is consistent as ``k -> inf``; ``k = 1`` gives
the ELBO in expectation. Memory stays bounded by drawing the ``k`` samples in chunks and
combining them with a running log-sum-exp.

Blocks: the points are evaluated ``batch_size`` at a time, the samples ``chunk_size`` at a
time, so that about ``memory_budget`` bytes of decoder output are alive per call. On an
accelerator the budget is :data:`ACCELERATOR_BUDGET` (large blocks keep it busy). On the CPU
the best budget depends on the machine (caches, and the allocator: blocks above a few MiB
are returned to the operating system after each call and page-faulted back in on the next),
so :func:`choose_block_sizes` times each of :data:`CPU_BUDGETS` on a small probe of the
actual model once per process (per data dimension and thread count) and keeps the fastest
(the 4 MiB default unless another is clearly faster: timing noise must not move it).

Random streams: with ``seed`` given, each block of points draws from a stream of its own,
seeded from ``seed`` and the block's first index (:func:`block_seed`), and the global stream
is left as it was; the per-point results then depend only on the seed, ``k`` and the block
sizes, which is what makes an interrupted evaluation resumable block by block.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch.distributions.utils import broadcast_all

from ..data.checks import as_data_tensor
from ..inference.svi import resolve_pair
from ..inference.traces import max_plate_nesting as plate_nesting_of
from ..inference.traces import sum_log_prob
from ..models.base import DATA_PLATE


def site_log_prob(fn: Any, value: torch.Tensor) -> torch.Tensor:
    """Return ``fn.log_prob(value)`` in nats; for Bernoulli pixels the same density in fewer passes.

    For ``Independent(Bernoulli(logits))`` (the usual image likelihood) torch computes the
    per-pixel cross-entropy ``(1 - x) l - log sigmoid(l)`` in four passes over
    ``(samples, points, pixels)``, negates it and sums it over the event. Here the event sums
    are taken of ``x l`` and of ``softplus(l)`` directly, ``log p = sum(x l) - sum(softplus(l))``:
    the same function (also for grey levels scored as soft labels), equal to torch's up to
    float32 rounding, in two passes. Any other distribution is scored by its own ``log_prob``.
    """
    base, event_dims = fn, 0
    while isinstance(base, torch.distributions.Independent):
        event_dims += base.reinterpreted_batch_ndims
        base = base.base_dist
    if type(base).log_prob is not torch.distributions.Bernoulli.log_prob or event_dims == 0:
        return fn.log_prob(value)
    if base._validate_args:
        base._validate_sample(value)
    logits, value = broadcast_all(base.logits, value)
    events = logits.shape[: logits.dim() - event_dims] + (-1,)
    dot = (logits * value).reshape(events).sum(-1)
    return dot - torch.nn.functional.softplus(logits).reshape(events).sum(-1)


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
        lp = sum_log_prob(site_log_prob(site["fn"], site["value"]), particle_dim, frames[0].dim)
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


CPU_BUDGETS = (2**20, 2**21, 2**22, 2**23, 2**24)
"""Candidate bytes of decoder output per call on the CPU, timed by :func:`choose_block_sizes`."""

CPU_DEFAULT_BUDGET = 2**22
"""The CPU budget kept unless another candidate is at least :data:`PROBE_MARGIN` faster (4 MiB)."""

PROBE_MARGIN = 0.1
"""How much faster per point-sample (a fraction) a candidate must be to replace the default."""

ACCELERATOR_BUDGET = 2**28
"""Bytes of decoder output per call on an accelerator (256 MiB)."""

PROBE_REPEATS = 1
_PROBED: dict[tuple, int] = {}  # (threads, dim, min(k, 64)) -> the fastest CPU budget


@dataclass(frozen=True)
class BlockSizes:
    """How an importance-sampled evaluation is cut into calls.

    ``batch_size``: data points per block; ``chunk_size``: importance samples per call;
    ``memory_budget``: the bytes of decoder output per call the sizes were made from;
    ``choice``: how the budget was chosen (``"probe"``: timed on this machine,
    ``"accelerator"``, ``"given"``: passed in, ``"only"``: every candidate gave the same blocks).
    """

    batch_size: int
    chunk_size: int
    memory_budget: int
    choice: str

    def to_metrics(self) -> dict[str, Any]:
        """Return the sizes as evaluation metrics: ``block_points``, ``block_samples``,
        ``block_bytes`` and ``block_choice``."""
        return {
            "block_points": self.batch_size,
            "block_samples": self.chunk_size,
            "block_bytes": self.memory_budget,
            "block_choice": self.choice,
        }


def block_shape(memory_budget: int, num_points: int, dim: int, k: int) -> tuple[int, int]:
    """Return ``(batch_size, chunk_size)``: points per block and samples per call so that about
    ``memory_budget`` bytes of float32 decoder output (``chunk * batch * dim``) exist at once."""
    batch = max(1, min(num_points, memory_budget // (4 * dim * min(k, 64))))
    chunk = max(1, min(k, memory_budget // (4 * dim * batch)))
    return batch, chunk


def block_seed(seed: int, start: int) -> int:
    """Return the torch seed of the block of points that starts at index ``start`` (a 63-bit int).

    Derived with NumPy's ``SeedSequence`` from ``(seed, start)``, so neighbouring blocks and
    neighbouring seeds get unrelated streams. ``ValueError`` for a negative seed or index.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if start < 0:
        raise ValueError(f"start must be a non-negative index, got {start!r}")
    state = np.random.SeedSequence([int(seed), int(start), 0x15]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@contextlib.contextmanager
def seeded_block(seed: int | None, start: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the body on the block stream :func:`block_seed` ``(seed, start)`` and restore the global
    streams afterwards (CPU, and ``device`` when it is a CUDA device); ``seed=None`` draws from
    the global streams as they are."""
    if seed is None:
        yield
        return
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(block_seed(seed, start))
        yield


def model_device(module: torch.nn.Module | None, data: torch.Tensor) -> torch.device:
    """Return where the model's parameters live (the data's device for a model without any)."""
    if module is not None:
        for p in module.parameters():
            return p.device
    return data.device


def model_dtype(module: Any, data: torch.Tensor) -> torch.dtype:
    """Return the floating dtype of the model's parameters (the data's dtype for a model without any)."""
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            if p.is_floating_point():
                return p.dtype
    return data.dtype


def _nesting(model_fn: Callable, guide_fn: Callable, x1: torch.Tensor) -> int:
    """The pair's plate nesting, found by tracing it once on its own stream (the global one untouched)."""
    devices = [x1.device] if x1.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return plate_nesting_of(model_fn, guide_fn, (x1,))


def _resolve(model: Any, data: Any, guide: Callable | None):
    data = as_data_tensor(data, "data", dtype=None)  # float64 kept: blocks move to the model's dtype
    model_fn, guide_fn, module = resolve_pair(model, guide)
    return data, model_fn, guide_fn, module


@torch.no_grad()
def _probe_budget(
    model_fn: Callable, guide_fn: Callable, data: torch.Tensor, k: int, nesting: int, dtype: torch.dtype
) -> tuple[int, str]:
    """Return the fastest of :data:`CPU_BUDGETS` per point-sample on this machine, and ``"probe"``
    (or ``"only"`` when every candidate gives the same blocks)."""
    n, d = data.shape[0], int(data[0].numel())
    key = (torch.get_num_threads(), d, min(k, 64))
    shapes: dict[tuple[int, int], int] = {}
    for budget in CPU_BUDGETS:
        shapes.setdefault(block_shape(budget, n, d, k), budget)
    if len(shapes) == 1:
        return next(iter(shapes.values())), "only"
    if key in _PROBED and _PROBED[key] in CPU_BUDGETS:
        return _PROBED[key], "probe"
    cost = dict.fromkeys(shapes.values(), math.inf)
    works = sorted(batch * chunk for batch, chunk in shapes)
    work = works[len(works) // 2]  # point-samples of one timed sample: the middle candidate's call
    with torch.random.fork_rng():
        torch.manual_seed(0)
        blocks = [
            (data[:batch].to(dtype=dtype), chunk, budget, max(1, round(work / (batch * chunk))))
            for (batch, chunk), budget in shapes.items()
        ]
        # each candidate in its steady state (the allocator settles on one block shape), each
        # timed sample about the same work (so a busy machine's preemptions fall alike on
        # all), in two sweeps, up and down, so that a change of the machine's load falls on all
        for xb, chunk, budget, calls in blocks + blocks[::-1]:
            log_weights(model_fn, guide_fn, xb, chunk, nesting)  # warm-up: first-touch allocations
            for _ in range(PROBE_REPEATS):
                t0 = time.perf_counter()
                for _ in range(calls):
                    log_weights(model_fn, guide_fn, xb, chunk, nesting)
                per_sample = (time.perf_counter() - t0) / (calls * xb.shape[0] * chunk)
                cost[budget] = min(cost[budget], per_sample)
    best = min(cost, key=cost.__getitem__)
    default = CPU_DEFAULT_BUDGET if CPU_DEFAULT_BUDGET in cost else best
    if cost[best] > cost[default] * (1 - PROBE_MARGIN):
        best = default  # not clearly faster: timing noise on a busy machine must not move it
    _PROBED[key] = best
    return best, "probe"


@torch.no_grad()
def choose_block_sizes(
    model: Any,
    data: Any,
    *,
    k: int,
    guide: Callable | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> BlockSizes:
    """Return the :class:`BlockSizes` an importance-sampled evaluation of ``data`` with ``k`` samples uses.

    Given sizes are kept. Otherwise the memory budget is ``memory_budget`` when given,
    :data:`ACCELERATOR_BUDGET` when the model lives on an accelerator, and on the CPU the
    fastest of :data:`CPU_BUDGETS` per point-sample, timed on a probe of the model (for each
    distinct block shape, a warm-up call then :data:`PROBE_REPEATS` timed samples of as many
    calls as make the middle candidate's work, in two sweeps, up and down the candidates; on the
    first points of ``data``, with a fixed seed and the global random streams restored) once
    per process for each data dimension and thread count; the fastest replaces
    :data:`CPU_DEFAULT_BUDGET` only when it is at least :data:`PROBE_MARGIN` faster.
    """
    data, model_fn, guide_fn, module = _resolve(model, data, guide)
    _check_k(k)
    for name, value in (
        ("batch_size", batch_size),
        ("chunk_size", chunk_size),
        ("memory_budget", memory_budget),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    n, d = data.shape[0], int(data[0].numel())
    device = model_device(module, data)
    choice = "given"
    if memory_budget is None and (batch_size is None or chunk_size is None):
        if device.type != "cpu":
            memory_budget, choice = ACCELERATOR_BUDGET, "accelerator"
        else:
            was_training = module.training if module is not None else False
            if module is not None:
                module.eval()
            try:
                probe = data[: block_shape(CPU_BUDGETS[-1], n, d, k)[0]].to(device)
                nesting = _nesting(model_fn, guide_fn, probe[:1].to(model_dtype(module, probe)))
                memory_budget, choice = _probe_budget(
                    model_fn, guide_fn, probe, k, nesting, model_dtype(module, probe)
                )
            finally:
                if module is not None and was_training:
                    module.train()
    if memory_budget is None:  # both sizes given: the budget they amount to
        memory_budget = 4 * d * min(batch_size, n) * min(chunk_size, k)
    if batch_size is None:
        batch_size = block_shape(memory_budget, n, d, k)[0]
    batch_size = min(batch_size, n)
    if chunk_size is None:
        chunk_size = max(1, min(k, memory_budget // (4 * d * batch_size)))
    return BlockSizes(int(batch_size), int(min(chunk_size, k)), int(memory_budget), choice)


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


@torch.no_grad()
def _importance_block(
    model_fn: Callable, guide_fn: Callable, xb: torch.Tensor, k: int, chunk_size: int, nesting: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(log p(x) estimates, mean log weights)`` of one block of points, float64 on its device."""
    acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=xb.device)
    wsum = torch.zeros(xb.shape[0], dtype=torch.float64, device=xb.device)
    done = 0
    while done < k:
        m = min(chunk_size, k - done)
        lw = log_weights(model_fn, guide_fn, xb, m, nesting).double()
        acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
        wsum += lw.sum(0)
        done += m
    return acc - math.log(k), wsum / k


BlockCallback = Callable[[int, torch.Tensor, torch.Tensor, float], None]
"""``on_block(start, log_likelihood, elbo, seconds)``: one computed block of points (float64 CPU
tensors of its points' values in nats, and the wall seconds it took)."""


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
    seed: int | None = None,
    completed: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    on_block: BlockCallback | None = None,
) -> dict[str, Any]:
    """Estimate log p(x) per data point by importance sampling with ``k`` guide samples.

    Returns a dict: ``log_likelihood`` (mean over points, nats per data point),
    ``bits_per_dim`` (``-log_likelihood / (D ln 2)``), ``elbo`` (the mean single-sample
    log weight, nats per data point: an unbiased ELBO estimate), ``k``, ``num_points``,
    ``per_point`` and ``per_point_elbo`` (``(N,)`` float64 tensors of the estimates, nats)
    and ``blocks`` (the :class:`BlockSizes` as metrics: ``block_points``, ``block_samples``,
    ``block_bytes``, ``block_choice``). ``batch_size``, ``chunk_size`` and ``memory_budget``
    fix the blocks (see :func:`choose_block_sizes` for the defaults).

    ``seed`` (an int) draws each block of points from a stream of its own (:func:`seeded_block`),
    leaving the global streams untouched; ``None`` draws from the global streams.
    ``completed`` maps a block's first index to its already computed ``(log_likelihood,
    elbo)`` values (from an interrupted evaluation with the same seed, ``k`` and block
    sizes); those blocks are not recomputed, a value of the wrong length is. ``on_block`` is
    called after every computed block (see :data:`BlockCallback`).
    """
    from tqdm.auto import tqdm

    data, model_fn, guide_fn, module = _resolve(model, data, guide)
    _check_k(k)
    if seed is not None:
        block_seed(seed, 0)  # ValueError naming a bad seed, before any work
    if hasattr(model, "check_data"):
        model.check_data(data)
    sizes = choose_block_sizes(
        model,
        data,
        k=k,
        guide=guide,
        batch_size=batch_size,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    )
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    n, d = data.shape[0], int(data[0].numel())
    # data stay where they are; each batch moves to the module's device (one copy per batch)
    device, dtype = model_device(module, data), model_dtype(module, data)
    nesting = _nesting(model_fn, guide_fn, data[:1].to(device=device, dtype=dtype))
    ll = torch.empty(n, dtype=torch.float64)
    elbo = torch.empty(n, dtype=torch.float64)
    starts = range(0, n, sizes.batch_size)
    reuse = {}
    for start in starts:
        stop = min(n, start + sizes.batch_size)
        old = (completed or {}).get(start)
        if old is not None and all(torch.as_tensor(v).shape == (stop - start,) for v in old):
            reuse[start] = old
    bar = tqdm(
        total=n,
        initial=sum(min(n, s + sizes.batch_size) - s for s in reuse),
        disable=not progress,
        desc=f"IS k={k}",
        unit="pt",
        leave=False,
    )
    try:
        for start in starts:
            stop = min(n, start + sizes.batch_size)
            if start in reuse:
                ll[start:stop] = torch.as_tensor(reuse[start][0], dtype=torch.float64)
                elbo[start:stop] = torch.as_tensor(reuse[start][1], dtype=torch.float64)
                continue
            t0 = time.perf_counter()
            xb = data[start:stop].to(device=device, dtype=dtype)
            with seeded_block(seed, start, device):
                # accumulated on the device: one device-to-host copy per block, not per chunk
                block_ll, block_elbo = _importance_block(model_fn, guide_fn, xb, k, sizes.chunk_size, nesting)
            ll[start:stop] = block_ll.cpu()
            elbo[start:stop] = block_elbo.cpu()
            if on_block is not None:
                on_block(start, ll[start:stop].clone(), elbo[start:stop].clone(), time.perf_counter() - t0)
            bar.update(stop - start)
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
        "per_point_elbo": elbo,
        "blocks": sizes.to_metrics(),
    }
