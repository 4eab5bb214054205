"""Measured gradient variance: mean, variance and signal-to-noise ratio of an estimator.

``gradient_moments`` draws ``num_draws`` independent gradient estimates of the negative ELBO
(or bound) at *fixed* parameters and a fixed batch, and summarizes them per parameter group
(``encoder``/``decoder`` for a VAE, or by name). Only the latent-sample noise varies
between draws, so the variance is the estimator's own, not minibatch noise.
:class:`GradientVarianceRecorder` calls it from ``fit`` at chosen steps so the variance can
be followed during training.

Units: gradients are of the loss in nats per data point (the loss divided by the batch size)
unless ``per_point=False``. ``variance`` is per coordinate, ``total_variance`` its sum
(the trace of the covariance), ``snr = ||mean|| / sqrt(total_variance)`` and
``median_snr`` the median over coordinates of ``|mean_i| / std_i`` (Rainforth et al. 2018).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO

from ..data.checks import as_data_tensor
from ..models.base import minibatch
from .estimators import make_estimator
from .objective import StepInfo
from .svi import resolve_pair

# Parameters an estimator owns (baselines) are not part of the model's gradient.
_ESTIMATOR_PREFIXES = ("_score_nn_baseline", "__baseline")


@dataclass
class GroupMoments:
    """Moments of one parameter group's gradient over ``num_draws`` draws.

    ``mean`` and ``variance`` are flat tensors (one entry per scalar parameter);
    ``total_variance`` is ``variance.sum()``; ``snr`` is ``||mean|| / sqrt(total_variance)``;
    ``median_snr`` the median per-coordinate ``|mean| / std``; ``num_params`` the size.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    total_variance: float
    snr: float
    median_snr: float
    num_params: int
    num_draws: int

    def summary(self) -> dict[str, float]:
        """Return the scalar fields as a JSON-ready dict (variance in (nats/point)^2 per unit parameter^2)."""
        return {
            "total_variance": self.total_variance,
            "mean_norm": float(self.mean.norm()),
            "snr": self.snr,
            "median_snr": self.median_snr,
            "num_params": self.num_params,
            "num_draws": self.num_draws,
        }


def _named_params(model_fn, guide_fn, module, x) -> dict[str, torch.Tensor]:
    """Return every trainable tensor the pair uses, by name (module parameters by dotted path)."""
    named: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    if module is not None:
        for name, p in module.named_parameters():
            if p.requires_grad:
                named[name] = p
                seen.add(id(p))
    with poutine.trace(param_only=True) as ptr:
        gtr = poutine.trace(guide_fn).get_trace(x)
        poutine.replay(model_fn, trace=gtr)(x)
    for name in sorted(ptr.trace.nodes):
        if name.startswith(_ESTIMATOR_PREFIXES):
            continue
        u = ptr.trace.nodes[name]["value"].unconstrained()
        if u.requires_grad and id(u) not in seen:
            named[name.split("$$$")[-1]] = u
            seen.add(id(u))
    if not named:
        raise ValueError("the model/guide pair has no trainable parameters")
    return named


def _group_of(name: str, groups) -> str | None:
    if groups == "module":
        return name.split(".")[0]
    if groups == "name":
        return name
    if callable(groups):
        return groups(name)
    for group, prefixes in groups.items():
        prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
        if name.startswith(prefixes):
            return group
    return None


def _one_draw(elbo: ELBO, model_fn, guide_fn, x, params: list[torch.Tensor]) -> list[torch.Tensor]:
    use_diff = callable(getattr(elbo, "differentiable_loss", None))
    if use_diff:
        loss = elbo.differentiable_loss(model_fn, guide_fn, x)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    # Only loss_and_grads (plain TraceGraph_ELBO): read .grad, then restore it.
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    elbo.loss_and_grads(model_fn, guide_fn, x)
    out = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
    for p, g in zip(params, saved):
        p.grad = g
    return out


def gradient_moments(
    model: Any,
    guide: Callable | None = None,
    estimator: str | ELBO = "reparam",
    data: torch.Tensor | None = None,
    num_draws: int = 100,
    *,
    groups: str | dict[str, str | Sequence[str]] | Callable[[str], str | None] = "module",
    num_particles: int = 1,
    per_point: bool = True,
    num_data: int | None = None,
    preserve_rng: bool = True,
) -> dict[str, GroupMoments]:
    """Return the gradient moments of ``estimator`` at the current parameters, per parameter group.

    ``model`` is an object with ``.model``/``.guide`` (``guide=None``) or a model function with
    ``guide``. ``data`` is the fixed batch ``(B, ...)`` the gradient is taken on (no
    minibatch scaling: the loss is the sum over its rows, divided by ``B`` when
    ``per_point``). ``groups``: ``"module"`` (first component of the parameter's dotted
    name: ``encoder``, ``decoder``; ``pyro.param`` sites by their name), ``"name"`` (one group
    per parameter tensor), a dict ``{group: prefix or prefixes}`` or a callable
    ``name -> group`` (``None`` drops the parameter). The dict returned also holds an
    ``"all"`` group. The random state is restored afterwards when ``preserve_rng`` (so a
    training run is not perturbed), as are decaying-average baselines in the param store.
    Draws are taken one after another (a loop over estimator calls; each call is itself
    vectorized over particles where the estimator is).
    """
    if data is None:
        raise ValueError("data (the fixed batch to take gradients on) is required")
    x = as_data_tensor(data, "data")
    if not isinstance(num_draws, int) or num_draws < 2:
        raise ValueError(f"num_draws must be an integer >= 2, got {num_draws!r}")
    if not (groups in ("module", "name") or callable(groups) or isinstance(groups, dict)):
        raise ValueError(f"groups must be 'module', 'name', a dict or a callable, got {groups!r}")
    model_fn, guide_fn, module = resolve_pair(model, guide)
    elbo = make_estimator(estimator, num_particles=num_particles)
    rng = torch.get_rng_state() if preserve_rng else None
    named = _named_params(model_fn, guide_fn, module, x)
    names = list(named)
    params = [named[n] for n in names]
    store = pyro.get_param_store()
    saved_baselines = {k: store[k].detach().clone() for k in list(store.keys()) if k.startswith("__baseline")}
    if num_data is not None and num_data < x.shape[0]:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({x.shape[0]} rows)")
    div = float(num_data or x.shape[0]) if per_point else 1.0
    scope = minibatch(num_data, torch.arange(x.shape[0])) if num_data else contextlib.nullcontext()
    was_training = module.training if module is not None else None
    try:
        draws = []
        with scope:
            for _ in range(num_draws):
                g = _one_draw(elbo, model_fn, guide_fn, x, params)
                draws.append(torch.cat([t.reshape(-1) for t in g]).detach() / div)
        flat = torch.stack(draws).double()  # (num_draws, P)
    finally:
        if rng is not None:
            torch.set_rng_state(rng)
        for k, v in saved_baselines.items():
            store[k] = v
        if module is not None and was_training is not None:
            module.train(was_training)
    sizes = [p.numel() for p in params]
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    index: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        group = _group_of(n, groups)
        if group is not None:
            index.setdefault(group, []).append(i)
    index["all"] = [i for idx in index.values() for i in idx] if index else []
    out: dict[str, GroupMoments] = {}
    for group, idx in index.items():
        cols = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in sorted(set(idx))])
        out[group] = _moments(flat[:, cols])
    return out


def _moments(g: torch.Tensor) -> GroupMoments:
    mean = g.mean(0)
    var = g.var(0, unbiased=True)
    total = float(var.sum())
    norm = float(mean.norm())
    snr = norm / math.sqrt(total) if total > 0 else math.inf
    std = var.sqrt()
    per = torch.where(std > 0, mean.abs() / std.clamp_min(1e-300), torch.full_like(std, math.inf))
    return GroupMoments(
        mean=mean,
        variance=var,
        total_variance=total,
        snr=snr,
        median_snr=float(per.median()),
        num_params=int(g.shape[1]),
        num_draws=int(g.shape[0]),
    )


class GradientVarianceRecorder:
    """A ``fit`` callback that records :func:`gradient_moments` at chosen steps.

    After the optimizer steps listed in ``at_steps`` (or every ``every`` steps) it measures
    ``estimator``'s gradient on the fixed batch ``data`` with ``num_draws`` draws and appends
    a row ``{"step", "seconds", <group>: summary dict}`` to :attr:`rows`; pass
    ``num_data`` (the training set size) so the batch is scaled as in ``fit``. The random state is
    restored, so the training run is the same with or without the recorder; the time spent
    measuring is accumulated in :attr:`seconds` (wall-clock seconds; :attr:`cpu_seconds` for
    this process's CPU time). Used as a callback of the engine, that time is counted in the
    run's ``eval_seconds``, never in its training seconds.
    """

    def __init__(
        self,
        model: Any,
        estimator: str | ELBO,
        data: torch.Tensor,
        *,
        num_draws: int = 20,
        at_steps: Sequence[int] | None = None,
        every: int | None = None,
        groups="module",
        guide: Callable | None = None,
        num_data: int | None = None,
    ):
        if at_steps is None and every is None:
            raise ValueError("give at_steps= or every=")
        if every is not None and every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        self.model = model
        self.guide = guide
        # One estimator instance for all measurements, so stateful baselines persist.
        self.estimator = make_estimator(estimator) if isinstance(estimator, str) else estimator
        self.data = data
        self.num_draws = num_draws
        self.at_steps = set(at_steps or ())
        self.every = every
        self.groups = groups
        self.num_data = num_data
        self.rows: list[dict] = []
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def __call__(self, info: StepInfo) -> None:
        """Measure when ``info.step`` is a recording step."""
        if info.step in self.at_steps or (self.every and info.step % self.every == 0):
            self.record(info.step)

    def record(self, step: int) -> dict:
        """Measure now and append (and return) a row labelled ``step`` (e.g. 0 before training)."""
        t0, c0 = time.perf_counter(), time.process_time()
        moments = gradient_moments(
            self.model,
            self.guide,
            self.estimator,
            self.data,
            self.num_draws,
            groups=self.groups,
            num_data=self.num_data,
        )
        row: dict[str, Any] = {"step": step}
        row.update({g: m.summary() for g, m in moments.items()})
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.cpu_seconds += time.process_time() - c0
        row["seconds"] = dt
        self.rows.append(row)
        return row
