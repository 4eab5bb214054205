"""Diagnostics of a variational posterior: PSIS k-hat, IS gap, posterior collapse, amortization gap.

* **PSIS k-hat** (Yao, Vehtari, Simpson and Gelman 2018, "Yes, but did it work?"): fit a
  generalized Pareto distribution to the largest importance weights
  w = p(x, z) / q(z | x), z ~ q. Its shape k-hat says how heavy the tail is: below 0.5 the
  weights have finite variance and the guide is close to the posterior; 0.5 to 0.7 the
  variance is infinite but importance sampling still converges at a usable rate; above 0.7
  the guide misses mass the posterior has and neither the guide nor IS corrections of it can
  be trusted. ArviZ's ``psislw`` does the fit.
* **IS log-likelihood and ELBO gap**: log p(x) estimated with k guide samples minus the ELBO
  estimates KL(q || p(z | x)) from above as k grows (nats per data point).
* **Posterior collapse**: a latent dimension u is *active* when
  A_u = Cov_x(E_q[z_u | x]) > 0.01 (Burda, Grosse and Salakhutdinov 2016); a collapsed
  dimension also has KL(q(z_u | x) || p(z_u)) close to 0 for every x.
* **Amortization gap** (Cremer, Li and Duvenaud 2018): ELBO of a per-data-point Gaussian
  guide optimized from the encoder's output minus the ELBO of the encoder itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.importance import vectorized_importance_weights
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from ..evaluation.likelihood import importance_log_likelihood, log_weights
from ..inference.svi import resolve_pair
from ..inference.traces import max_plate_nesting
from ..models.base import DATA_PLATE, data_plate

KHAT_GOOD = 0.5
KHAT_OK = 0.7
ACTIVITY_THRESHOLD = 0.01
KL_COLLAPSE_THRESHOLD = 0.01


def _check_data(data: Any) -> torch.Tensor:
    """Return ``data`` as a float tensor; ``ValueError`` if it is empty, scalar or not finite.

    (Looser than ``as_data_tensor``: the conjugate and hierarchical models diagnosed here
    often take a 1-D vector of observations.)
    """
    if not torch.is_tensor(data):
        data = torch.as_tensor(np.asarray(data), dtype=torch.get_default_dtype())
    if data.dim() == 0 or data.shape[0] == 0:
        raise ValueError(f"data must have at least one row, got shape {tuple(data.shape)}")
    if data.is_floating_point() and not torch.isfinite(data).all():
        raise ValueError("data contains NaN or infinite values")
    return data


# --------------------------------------------------------------------------- k-hat
def khat_verdict(khat: float) -> str:
    """Return the plain-language reading of one PSIS k-hat (thresholds 0.5 and 0.7, Yao et al. 2018)."""
    if math.isnan(khat):
        return "undefined: the importance weights are degenerate"
    if khat == -math.inf:
        return "good: the importance weights are constant, the guide equals the posterior"
    if khat < KHAT_GOOD:
        return "good: the guide is close to the posterior (importance weights have finite variance)"
    if khat < KHAT_OK:
        return "usable: the guide is a fair approximation; importance sampling corrections still work"
    if khat < 1.0:
        return "poor: the guide misses posterior mass; do not trust it or its IS estimates"
    return "very poor: the importance weights have no finite mean; the guide is far from the posterior"


def psis_khat(log_weights: torch.Tensor | np.ndarray) -> float | np.ndarray:
    """Return the PSIS k-hat of log importance weights.

    ``log_weights`` is ``(S,)`` (one number returned) or ``(S, N)`` (one k-hat per column,
    an ``(N,)`` array returned). Uses ``az.psislw``, which reads the last axis as samples.
    """
    lw = (
        log_weights.detach().cpu().double().numpy()
        if torch.is_tensor(log_weights)
        else np.asarray(log_weights)
    )
    if lw.ndim not in (1, 2):
        raise ValueError(f"log_weights must be (S,) or (S, N), got shape {lw.shape}")
    if lw.shape[0] < 20:
        raise ValueError(f"PSIS needs at least 20 samples for a tail fit, got {lw.shape[0]}")
    if not np.isfinite(lw).all():
        raise ValueError("log_weights contain NaN or infinite values")
    cols = lw.reshape(lw.shape[0], -1)
    # Weights equal to float precision (the guide is the posterior) leave no tail to fit: the
    # Pareto fit would divide by zero and return noise. Such columns get k-hat = -inf (bounded
    # weights, the best case); the tolerance is float32 rounding of log p(x, z).
    spread = cols.max(0) - cols.min(0)
    constant = spread <= 1e-5 * np.maximum(1.0, np.abs(cols).max(0))
    k = np.full(cols.shape[1], -np.inf)
    if not constant.all():
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            _, k_fit = az.psislw(cols[:, ~constant].T.copy())
        k[~constant] = np.atleast_1d(k_fit)
    return float(k[0]) if lw.ndim == 1 else k


def _summarize_khat(k: float | np.ndarray) -> dict[str, Any]:
    if np.ndim(k) == 0:
        return {"khat": float(k), "max_khat": float(k), "verdict": khat_verdict(float(k))}
    k = np.asarray(k)
    good, ok = float(np.mean(k < KHAT_GOOD)), float(np.mean((k >= KHAT_GOOD) & (k < KHAT_OK)))
    worst = float(k.max())
    return {
        "khat": k,
        "max_khat": worst,
        "median_khat": float(np.median(k)),
        "fraction_good": good,
        "fraction_ok": ok,
        "fraction_bad": 1.0 - good - ok,
        "verdict": (
            f"{100 * good:.0f}% of data points good (k<0.5), {100 * ok:.0f}% usable (0.5-0.7), "
            f"{100 * (1 - good - ok):.0f}% poor (>0.7); worst point: {khat_verdict(worst)}"
        ),
    }


def all_in_data_plate(model_fn: Callable, guide_fn: Callable, args: tuple) -> bool:
    """Return True when every sample site of the guide and the model lies in the ``"data"`` plate.

    Such a pair (an amortized encoder and its model) has importance weights per data point.
    """
    gtr = poutine.trace(guide_fn).get_trace(*args)
    mtr = poutine.trace(poutine.replay(model_fn, trace=gtr)).get_trace(*args)
    return all(
        any(f.name == DATA_PLATE for f in s["cond_indep_stack"])
        for tr in (gtr, mtr)
        for s in tr.nodes.values()
        if s["type"] == "sample" and not site_is_subsample(s)
    )


@torch.no_grad()
def variational_log_weights(
    model: Any, data: torch.Tensor, guide: Callable | None = None, *, num_samples: int = 1000
) -> tuple[torch.Tensor, bool]:
    """Return ``(log_weights, per_point)``: log p(x, z) - log q(z | x) in nats, z ~ q.

    For amortized guides (every site inside the data plate) the weights are ``(S, N)``, one
    column per data point (via :func:`pyro_gen.evaluation.likelihood.log_weights`); otherwise
    ``(S,)`` for the whole data set (via Pyro's ``vectorized_importance_weights``).
    """
    data = _check_data(data)
    model_fn, guide_fn, module = resolve_pair(model, guide)
    if module is not None:
        module.eval()
    if all_in_data_plate(model_fn, guide_fn, (data,)):
        return log_weights(model_fn, guide_fn, data, num_samples), True
    nesting = max_plate_nesting(model_fn, guide_fn, (data,), {})
    lw, _, _ = vectorized_importance_weights(
        model_fn, guide_fn, data, num_samples=num_samples, max_plate_nesting=nesting
    )
    return lw, False


def psis_diagnostic(
    model: Any, data: torch.Tensor, guide: Callable | None = None, *, num_samples: int = 1000
) -> dict[str, Any]:
    """Return PSIS k-hat of the guide: one value (global guide) or one per data point (amortized).

    The dict has ``khat`` (float or ``(N,)`` array), ``max_khat``, ``verdict`` (words), and
    for amortized guides ``median_khat`` and the fractions of points below 0.5
    (``fraction_good``), between 0.5 and 0.7 (``fraction_ok``) and above (``fraction_bad``).
    """
    lw, per_point = variational_log_weights(model, data, guide, num_samples=num_samples)
    out = _summarize_khat(psis_khat(lw))
    out["per_point"] = per_point
    out["num_samples"] = num_samples
    return out


def khat_from_inference_data(idata: Any) -> dict[str, Any]:
    """Return the k-hat summary of the ``sample_stats.log_weight`` that :func:`to_inference_data` stored."""
    if "sample_stats" not in idata.groups() or "log_weight" not in idata.sample_stats:
        raise ValueError("idata has no sample_stats.log_weight (it does not come from a guide)")
    lw = idata.sample_stats["log_weight"].stack(__sample__=("chain", "draw")).transpose("__sample__", ...)
    return _summarize_khat(psis_khat(lw.values))


# --------------------------------------------------------------------------- IS gap
def importance_gap(
    model: Any, data: torch.Tensor, guide: Callable | None = None, *, k: int = 1000, progress: bool = False
) -> dict[str, float]:
    """Return the IS log-likelihood, the ELBO and their gap, all in nats per data point.

    ``log_likelihood`` is the k-sample importance estimate of log p(x) (a lower bound that
    tightens with k), ``elbo`` the single-sample bound, ``gap = log_likelihood - elbo``:
    an estimate of KL(q || posterior) per data point (from below, for finite k).
    """
    data = _check_data(data)
    model_fn, guide_fn, _ = resolve_pair(model, guide)
    if all_in_data_plate(model_fn, guide_fn, (data,)):
        ev = importance_log_likelihood(model, data, guide=guide, k=k, progress=progress)
        ll, elbo = ev["log_likelihood"], ev["elbo"]
    else:
        lw, _ = variational_log_weights(model, data, guide, num_samples=k)
        lw = lw.double()
        n = data.shape[0]
        ll = float(torch.logsumexp(lw, 0) - math.log(k)) / n
        elbo = float(lw.mean()) / n
    return {"log_likelihood": ll, "elbo": elbo, "gap": ll - elbo, "k": k}


# --------------------------------------------------------------------------- collapse
def _strip(d: dist.Distribution) -> dist.Distribution:
    while isinstance(d, dist.Independent | torch.distributions.Independent):
        d = d.base_dist
    return d


def _latent_site(model_fn: Callable, guide_fn: Callable, x: torch.Tensor, site: str | None):
    gtr = poutine.trace(guide_fn).get_trace(x)
    mtr = poutine.trace(poutine.replay(model_fn, trace=gtr)).get_trace(x)
    local = [
        n
        for n, s in gtr.nodes.items()
        if s["type"] == "sample"
        and not site_is_subsample(s)
        and any(f.name == DATA_PLATE for f in s["cond_indep_stack"])
    ]
    if site is None:
        if len(local) != 1:
            raise ValueError(f"the guide has latent sites {local} in the data plate; name one with site=")
        site = local[0]
    if site not in local:
        raise ValueError(f"site {site!r} is not a per-data-point latent of the guide (found {local})")
    return site, gtr.nodes[site], mtr.nodes[site]


@torch.no_grad()
def active_units(
    model: Any,
    data: torch.Tensor,
    guide: Callable | None = None,
    *,
    site: str | None = None,
    threshold: float = ACTIVITY_THRESHOLD,
) -> dict[str, Any]:
    """Return Burda et al.'s activity A_u = Var_x(E_q[z_u | x]) of every latent dimension.

    The dict has ``activity`` (``(L,)`` array, squared latent units), ``active`` (bool
    array, ``activity > threshold``), ``num_active`` and ``num_units``. The guide's mean
    ``E_q[z | x]`` is read from the guide distribution of the per-data-point ``site``.
    """
    data = _check_data(data)
    if data.shape[0] < 2:
        raise ValueError("active_units needs at least 2 data points (it is a variance over data)")
    model_fn, guide_fn, module = resolve_pair(model, guide)
    if module is not None:
        module.eval()
    _, gsite, _ = _latent_site(model_fn, guide_fn, data, site)
    mean = gsite["fn"].mean.reshape(data.shape[0], -1)
    activity = mean.double().var(0, unbiased=False).numpy()
    active = activity > threshold
    return {
        "activity": activity,
        "active": active,
        "num_active": int(active.sum()),
        "num_units": int(activity.shape[0]),
        "threshold": threshold,
    }


@torch.no_grad()
def kl_per_dim(
    model: Any,
    data: torch.Tensor,
    guide: Callable | None = None,
    *,
    site: str | None = None,
    num_samples: int = 256,
    threshold: float = KL_COLLAPSE_THRESHOLD,
) -> dict[str, Any]:
    """Return KL(q(z_u | x) || p(z_u)) per latent dimension u, averaged over data (nats per point).

    Closed form where torch has it for the factorized (``Independent``-stripped) guide and
    prior, else a Monte Carlo estimate with ``num_samples`` draws. The dict has ``kl``
    (``(L,)`` array), ``total`` (sum, nats), ``collapsed`` (bool array, ``kl < threshold``)
    and ``num_collapsed``.
    """
    data = _check_data(data)
    model_fn, guide_fn, module = resolve_pair(model, guide)
    if module is not None:
        module.eval()
    _, gsite, msite = _latent_site(model_fn, guide_fn, data, site)
    q, p = _strip(gsite["fn"]), _strip(msite["fn"])
    try:
        kl = torch.distributions.kl_divergence(q, p)
    except NotImplementedError:
        z = q.sample((num_samples,))
        kl = (q.log_prob(z) - p.log_prob(z)).mean(0)
    shape = torch.broadcast_shapes(kl.shape, gsite["value"].shape)
    kl = kl.expand(shape).reshape(data.shape[0], -1).double().mean(0).numpy()
    collapsed = kl < threshold
    return {
        "kl": kl,
        "total": float(kl.sum()),
        "collapsed": collapsed,
        "num_collapsed": int(collapsed.sum()),
        "threshold": threshold,
    }


# --------------------------------------------------------------------------- amortization gap
def amortization_gap(
    model: Any,
    data: torch.Tensor,
    guide: Callable | None = None,
    *,
    num_points: int = 32,
    steps: int = 300,
    lr: float = 0.02,
    num_particles: int = 16,
    eval_particles: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Return the amortization gap of an amortized Gaussian guide on ``num_points`` random points.

    For each point a free Gaussian q_n(z) = N(m_n, s_n) is started at the encoder's output and
    its ELBO maximised by Adam (``steps`` steps, ``num_particles`` reparameterized draws,
    model held fixed, learning rate annealed to 0); where that ends below the encoder's own
    Gaussian the encoder's is kept. With ``eval_particles`` draws per point it returns, in
    nats per data point: ``elbo_encoder``, ``elbo_optimized``, ``log_likelihood`` (IS, the
    better of the encoder and the optimized guide as proposal), ``amortization_gap =
    elbo_optimized - elbo_encoder``, ``approximation_gap = log_likelihood - elbo_optimized``
    and the per-point amortization gaps (``per_point``).
    """
    data = _check_data(data)
    if num_points < 1 or steps < 1:
        raise ValueError(f"num_points and steps must be positive, got {num_points}, {steps}")
    model_fn, guide_fn, module = resolve_pair(model, guide)
    if module is not None:
        module.eval()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.shape[0], generator=gen)[: min(num_points, data.shape[0])]
    x = data[idx]
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        gtr = poutine.trace(guide_fn).get_trace(x)
    init: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    for name, s in gtr.nodes.items():
        if s["type"] != "sample" or site_is_subsample(s):
            continue
        base = _strip(s["fn"])
        if not isinstance(base, torch.distributions.Normal):
            raise ValueError(
                f"amortization_gap needs Gaussian guide sites; {name!r} is {type(base).__name__}"
            )
        if not any(f.name == DATA_PLATE for f in s["cond_indep_stack"]):
            raise ValueError(f"site {name!r} is global: the amortization gap needs per-data-point latents")
        shape = s["value"].shape
        init[name] = (base.loc.expand(shape).detach(), base.scale.expand(shape).detach(), s["fn"].event_dim)
    locs = {n: v[0].clone().requires_grad_(True) for n, v in init.items()}
    log_scales = {n: v[1].log().clone().requires_grad_(True) for n, v in init.items()}

    def local_guide(xb: torch.Tensor) -> None:
        with data_plate(xb):
            for n, (_, _, ev) in init.items():
                pyro.sample(n, dist.Normal(locs[n], log_scales[n].exp()).to_event(ev))

    params = list(locs.values()) + list(log_scales.values())
    opt = torch.optim.Adam(params, lr=lr)
    # Annealed to 0 so the final iterate sits at the optimum, not at the noise floor of SGD.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    nesting = max_plate_nesting(model_fn, guide_fn, (x,), {})
    elbo = Trace_ELBO(
        num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=nesting
    )
    for _ in tqdm(range(steps), disable=not progress, desc="amortization gap", leave=False):
        loss = elbo.differentiable_loss(model_fn, local_guide, x)
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        sched.step()
    with torch.no_grad():
        lw_enc = log_weights(model_fn, guide_fn, x, eval_particles, nesting).double()
        lw_opt = log_weights(model_fn, local_guide, x, eval_particles, nesting).double()
    # Adam started at an optimum still takes steps of about lr on noisy gradients; keep the
    # encoder's own Gaussian where the optimizer ended worse (the gap is never negative).
    elbo_enc = lw_enc.mean(0)
    elbo_opt = torch.maximum(lw_opt.mean(0), elbo_enc)
    # log p(x) by IS with whichever proposal gives the larger estimate (both are stochastic
    # lower bounds; the encoder alone can be a poor proposal exactly where the gap is large)
    ll = torch.maximum(torch.logsumexp(lw_enc, 0), torch.logsumexp(lw_opt, 0)) - math.log(eval_particles)
    gap = elbo_opt - elbo_enc
    return {
        "elbo_encoder": float(elbo_enc.mean()),
        "elbo_optimized": float(elbo_opt.mean()),
        "log_likelihood": float(ll.mean()),
        "amortization_gap": float(gap.mean()),
        "approximation_gap": float((ll - elbo_opt).mean()),
        "per_point": gap.numpy(),
        "indices": idx.numpy(),
        "num_points": int(idx.numel()),
        "steps": steps,
    }
