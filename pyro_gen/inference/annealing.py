"""Posterior-collapse remedies of the SVI objective: KL weights and their schedules, free bits,
and what aggressive encoder updates need (the guide's parameters, a mutual-information estimate).

With latent sites ``z`` (every non-observed sample site of the guide) and observations ``x``,
the objective one step minimizes, in nats, is

    loss = -( E_q[log p(x | z)]  -  w_t * KL_t ),

* ``w_t`` the KL weight of update ``t`` (:func:`kl_weight`): ``beta`` (constant), a linear
  warm-up ``beta * min(1, t / W)``, or Fu et al.'s (2019) cyclical schedule
  ``beta * min(1, tau / R)``, ``tau = (t mod ceil(T / M)) / (T / M)`` for ``M`` cycles over
  ``T`` updates with ramp fraction ``R``; ``t`` counts updates from 0, so the first update
  of an annealed run has weight 0;
* ``KL_t = E_q[log q(z | x) - log p(z)]`` summed over the latent sites (Monte Carlo, the same
  draws as Pyro's ``Trace_ELBO``; or closed form per site with ``analytic_kl``), or with free
  bits (Kingma et al. 2016, eq. 15) ``N * sum_d max(lambda, KL_d)``, where ``KL_d`` is the
  KL of latent dimension ``d`` averaged over the minibatch (in the closed form where the
  guide/prior pair has one, Normal/Normal with a single latent site, else the per-dimension
  Monte Carlo term ``log q(z_d | x) - log p(z_d)``; :attr:`RemedyELBO.kl_methods` says which).

Weighting the latent sites' log-densities is exact for reparameterized guides only: a
score-function term would be weighted too (its gradient is ``E[f grad log q]``, not
``w E[...]``), so :class:`RemedyELBO` refuses non-reparameterized latent sites, and the SVI
objective refuses estimators other than :data:`~pyro_gen.config.REMEDY_ESTIMATORS`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample

from ..config import SVIConfig
from ..models.base import DATA_PLATE
from .estimators import own_stream

#: inner guide updates per window of the aggressive stopping rule (He et al.'s code: 15)
AGGRESSIVE_WINDOW = 15
#: training rows on which the aggressive phase measures I(x; z) once an epoch
MI_ROWS = 500


def kl_weight(config: SVIConfig, step: int, total_steps: int) -> float:
    """Return the KL weight of update ``step`` (counted from 0) of ``total_steps`` (a number >= 0).

    ``constant``: ``beta``; ``linear``: ``beta * min(1, step / kl_warmup_steps)``;
    ``cyclical`` (Fu et al. 2019): ``beta * min(1, tau / kl_ramp)`` with
    ``tau = (step mod ceil(P)) / P`` and period ``P = total_steps / kl_cycles``.
    """
    schedule, beta = config.schedule, float(config.beta)
    if schedule == "constant":
        return beta
    if schedule == "linear":
        return beta * min(1.0, step / config.kl_warmup_steps)
    period = max(1.0, total_steps / config.kl_cycles)
    tau = (step % math.ceil(period)) / period
    return beta * min(1.0, tau / config.kl_ramp)


def strip_independent(fn: Any) -> Any:
    """Return the distribution under every ``Independent`` wrapper of ``fn`` (its per-dimension factors)."""
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    return fn


def _latent_sites(guide_trace) -> list[str]:
    return [
        name
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site) and not site["is_observed"]
    ]


def _data_dim(site, ndim: int) -> int | None:
    """Return the axis (from the left, of the per-dimension terms) of the data plate, or None."""
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA_PLATE and frame.dim is not None:
            return ndim + frame.dim - len(site["fn"].event_shape)
    return None


class RemedyELBO(Trace_ELBO):
    """The negative ELBO with a KL weight (``weight``, set before each step) and optional free bits.

    ``loss = -(sum_obs log p(x | z) - weight * KL)`` in nats, summed over the (scaled) data
    plate as Pyro's ELBOs are (see the module docstring for ``KL`` with and without
    ``free_bits``). ``analytic_kl`` takes every site's KL in closed form (``kl_divergence`` of
    the factors; Pyro's ``TraceMeanField_ELBO``), else the Monte Carlo term of ``Trace_ELBO``,
    whose loss and gradients this equals at ``weight = 1`` without free bits. After each call,
    :attr:`last_elbo` holds the unweighted ELBO estimate and :attr:`last_kl` the KL estimate
    (tensors, nats summed over the scaled plate), :attr:`kl_methods` the KL used per site
    (``"closed form"`` or ``"Monte Carlo"``). With ``num_particles > 1`` the particles are drawn
    at once in a vectorized particle plate (``vectorize_particles``, the default then; as the
    ``reparam`` estimator's), so the model and guide must broadcast over a leading particle
    axis as Pyro's vectorized ELBOs need; ``vectorize_particles=False`` draws them one after
    another. Every sum over the particle axis is divided by ``num_particles``, so both give the
    same objective (free bits clamp each particle's per-dimension KL, as the loop does).
    """

    def __init__(
        self,
        num_particles: int = 1,
        *,
        analytic_kl: bool = False,
        free_bits: float | None = None,
        vectorize_particles: bool | None = None,
    ):
        vectorize = num_particles > 1 if vectorize_particles is None else bool(vectorize_particles)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize)
        self.analytic_kl, self.free_bits = bool(analytic_kl), free_bits
        self.weight = 1.0
        self.last_elbo: torch.Tensor | None = None
        self.last_kl: torch.Tensor | None = None
        self.kl_methods: dict[str, str] = {}

    def _site_kl(self, name: str, gsite, msite, closed: bool) -> torch.Tensor:
        """Return the per-element KL terms of one latent site (shape: its batch and event axes)."""
        q, p = strip_independent(gsite["fn"]), strip_independent(msite["fn"])
        if closed:
            try:
                kl = torch.distributions.kl_divergence(q, p)
                self.kl_methods[name] = "closed form"
                return kl.expand(torch.broadcast_shapes(kl.shape, gsite["value"].shape))
            except NotImplementedError:
                pass
        self.kl_methods[name] = "Monte Carlo"
        z = gsite["value"]
        return q.log_prob(z) - p.log_prob(z)

    def _particle(self, model_trace, guide_trace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(loss, elbo, kl)`` of one particle, or summed over the particles of a vectorized
        trace (nats over the scaled plate)."""
        names = _latent_sites(guide_trace)
        if not names:
            raise ValueError(
                "--beta, --kl-schedule, --free-bits and --aggressive-encoder act on latent sites: "
                "this model has none (it is fit by maximum likelihood)"
            )
        obs: torch.Tensor | float = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["is_observed"]:
                obs = obs + site["log_prob_sum"]
            elif name not in guide_trace.nodes:
                raise ValueError(
                    f"the model's latent site {name!r} has no guide site: a KL weight needs both"
                )
        kl_sum: torch.Tensor | float = 0.0
        kl_obj: torch.Tensor | float = 0.0
        closed = self.analytic_kl or (self.free_bits is not None and len(names) == 1)
        for name in names:
            gsite, msite = guide_trace.nodes[name], model_trace.nodes.get(name)
            if msite is None:
                raise ValueError(f"the guide's site {name!r} is not in the model")
            if not gsite["fn"].has_rsample or gsite["infer"].get("enumerate"):
                raise ValueError(
                    f"latent site {name!r} is not reparameterized: a KL weight or free bits is exact "
                    "only for reparameterized guides"
                )
            kl = self._site_kl(name, gsite, msite, closed)
            scale = gsite["scale"]
            kl_sum = kl_sum + scale * kl.sum()
            if self.free_bits is None:
                continue
            if len(strip_independent(gsite["fn"]).event_shape) > 0:
                raise ValueError(
                    f"--free-bits needs a guide that factorizes per latent dimension at site {name!r} "
                    f"(got {type(strip_independent(gsite['fn'])).__name__})"
                )
            axis = _data_dim(gsite, kl.dim())
            if axis is None:
                kl_obj = kl_obj + scale * kl.clamp(min=self.free_bits).sum()
            else:
                rows = kl.shape[axis]
                kl_obj = kl_obj + scale * rows * kl.mean(axis).clamp(min=self.free_bits).sum()
        if self.free_bits is None:
            kl_obj = kl_sum
        loss = -(obs - self.weight * kl_obj)
        return loss, (obs - kl_sum).detach(), torch.as_tensor(kl_sum).detach()

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """Return the weighted negative ELBO (nats, summed over the scaled data plate), differentiable."""
        loss: torch.Tensor | float = 0.0
        elbo: torch.Tensor | float = 0.0
        kl: torch.Tensor | float = 0.0
        # one trace per particle, or one vectorized trace whose sums cover all the particles:
        # either way the particles' sum is divided by their number
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            lp, ep, kp = self._particle(model_trace, guide_trace)
            loss, elbo, kl = (
                loss + lp / self.num_particles,
                elbo + ep / self.num_particles,
                kl + kp / self.num_particles,
            )
        self.last_elbo, self.last_kl = torch.as_tensor(elbo), torch.as_tensor(kl)
        return loss  # type: ignore[return-value]

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Return the weighted negative ELBO as a float (nats)."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate the weighted negative ELBO and return it as a float (nats)."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss)


def guide_parameters(guide: Callable, batch: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Return the tensors of ``params`` that the guide's distributions depend on (its variational parameters).

    The guide runs once on ``batch`` on a copy of the random state; a parameter counts when the
    log-density of its sample sites at their (detached) values has a gradient path to it.
    """
    with own_stream((batch,)), poutine.block(), poutine.trace() as tr:
        guide(batch)
    total: torch.Tensor | float = 0.0
    for name in _latent_sites(tr.trace):
        site = tr.trace.nodes[name]
        total = total + site["fn"].log_prob(site["value"].detach()).sum()
    if not torch.is_tensor(total) or not total.requires_grad:
        return []
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return [p for p, g in zip(params, grads, strict=True) if g is not None]


@torch.no_grad()
def mutual_information(
    guide: Callable, data: torch.Tensor, site: str | None = None, *, seed: int | None = 0
) -> float:
    """Return the estimate of I(x; z) under q(x, z) = p_data(x) q(z | x) of He et al. (2019), in nats.

    ``I = E_x E_q(z|x)[log q(z | x)] - E_x E_q(z|x)[log q(z)]`` with the aggregate posterior
    ``q(z) = (1/N) sum_j q(z | x_j)`` over the ``N`` rows of ``data`` (one draw ``z_i`` per
    row, both terms on the same draws, so a guide that ignores ``x`` scores exactly 0; He et
    al. take the first term in closed form): at most ``log N``.
    ``site`` is the per-data-point latent site (default: the guide's first). ``seed`` draws
    on a stream of its own (None: the global stream).
    """
    if data.dim() < 1 or data.shape[0] < 2:
        raise ValueError("the mutual information needs at least 2 data points")
    ctx = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with ctx:
        if seed is not None:
            torch.manual_seed(seed)
        with poutine.block(), poutine.trace() as tr:
            guide(data)
    names = [
        n
        for n in _latent_sites(tr.trace)
        if any(f.name == DATA_PLATE for f in tr.trace.nodes[n]["cond_indep_stack"])
    ]
    if not names:
        raise ValueError("the guide has no per-data-point latent site: no mutual information to estimate")
    site = names[0] if site is None else site
    if site not in names:
        raise ValueError(f"site {site!r} is not a per-data-point latent of the guide (found {names})")
    node = tr.trace.nodes[site]
    fn, z = node["fn"], node["value"]
    n = data.shape[0]
    if tuple(fn.batch_shape) != (n,):
        raise ValueError(f"site {site!r} must have batch shape ({n},) for the mutual information")
    neg_entropy = fn.log_prob(z).double().mean()  # the same draws as the aggregate term
    # cross[i, j] = log q(z_i | x_j): the rows' values against every row's distribution
    cross = fn.log_prob(z.unsqueeze(1)).double()
    log_qz = torch.logsumexp(cross, dim=1) - math.log(n)
    return float(neg_entropy - log_qz.mean())
