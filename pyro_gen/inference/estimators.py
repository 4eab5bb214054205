"""Gradient estimators by name: every one is a Pyro ELBO object usable with ``fit``.

``make_estimator("reparam")`` and friends return fresh ELBO instances. New estimators are
added with :func:`register_estimator`, so the CLI and ``compare`` pick them up by name.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable

import pyro
import pyro.infer as infer
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.util import torch_item
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from ..models.base import DATA_PLATE
from .catalog import BUILTIN_ESTIMATORS
from .traces import plate_nesting, sum_log_prob

_ESTIMATORS: dict[str, tuple[Callable[..., ELBO], str, Callable[[str], dict] | None]] = {}


def register_estimator(
    name: str,
    factory: Callable[..., ELBO],
    summary: str | None = None,
    parse: Callable[[str], dict] | None = None,
) -> None:
    """Register ``factory(num_particles=..., **kw) -> ELBO`` under ``name``; returns None.

    ``summary`` (one line for ``pyro-gen list``) defaults to the built-in catalog's entry.
    ``parse`` turns the text after the name's colon (``"8x8"`` in ``"miwae:8x8"``) into
    keyword arguments of ``factory``, raising ``ValueError`` for text it cannot read; without
    it the text must be a positive integer, the particle count (``"iwae:5"``).
    """
    if summary is None:
        if name not in BUILTIN_ESTIMATORS:
            raise ValueError(f"register_estimator({name!r}, ...) needs a summary")
        summary = BUILTIN_ESTIMATORS[name]
    _ESTIMATORS[name] = (factory, summary, parse)


def estimator_names() -> list[str]:
    """Return the registered estimator names, sorted."""
    return sorted(_ESTIMATORS)


def parse_particles(arg: str) -> dict:
    """Return ``{"num_particles": K}`` for the text ``"K"`` (a positive integer); else raise ValueError."""
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError("the particle count after ':' must be a positive integer")
    return {"num_particles": int(arg)}


def make_estimator(spec: str | ELBO, num_particles: int = 1, **kwargs) -> ELBO:
    """Return an ELBO for ``spec``: an ELBO instance (returned as is) or a registered name.

    A name may carry arguments after a colon: the particle count (``"iwae:5"``) or the
    estimator's own syntax (``"miwae:8x8"``, ``"ciwae:64:0.5"``: see ``docs/bounds.md``);
    they override ``num_particles`` and ``kwargs``.
    """
    if isinstance(spec, ELBO):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"estimator must be a name or a pyro.infer.ELBO, got {type(spec).__name__}")
    name, colon, arg = spec.partition(":")
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {spec!r}; choose one of {', '.join(estimator_names())}")
    factory, _, parse = _ESTIMATORS[name]
    if colon:
        try:
            parsed = (parse or parse_particles)(arg)
        except ValueError as e:
            raise ValueError(f"estimator {spec!r}: {e}") from None
        kwargs = {**kwargs, **parsed}
        num_particles = kwargs.pop("num_particles", num_particles)
        try:
            return factory(num_particles=num_particles, **kwargs)
        except ValueError as e:
            raise ValueError(f"estimator {spec!r}: {e}") from None
    return factory(num_particles=num_particles, **kwargs)


def own_stream(args) -> contextlib.AbstractContextManager:
    """Return a context that runs a block on a copy of the random state (CPU and the args' GPUs)."""
    devices = sorted({a.device.index or 0 for a in args if torch.is_tensor(a) and a.device.type == "cuda"})
    return torch.random.fork_rng(devices=devices)


def guess_plate_nesting(elbo: ELBO, model, guide, *args) -> None:
    """Fix ``elbo.max_plate_nesting`` by Pyro's probe, run on a copy of the random state.

    Pyro's ELBOs guess the nesting on their first call by running the model and guide once,
    which draws random numbers: a run resumed from a checkpoint would draw them at another
    step than an uninterrupted one. Calling this before the first step keeps both streams
    equal. Does nothing when the nesting is already known.
    """
    if getattr(elbo, "max_plate_nesting", 0) != float("inf"):
        return
    if not getattr(elbo, "vectorize_particles", False) and not isinstance(elbo, infer.TraceEnum_ELBO):
        return
    with own_stream(args):
        elbo._guess_max_plate_nesting(model, guide, args, {})


class SyncFreeTrace_ELBO(infer.Trace_ELBO):
    """``Trace_ELBO`` whose ``differentiable_loss`` never reads a value back to the host.

    Pyro's version checks the loss for NaN (``if isnan(...)``) and subtracts the surrogate's
    value as a Python float (``.item()``): two host-device synchronizations per step, which
    stall a GPU. Here the surrogate's value is cancelled with ``surrogate - surrogate.detach()``
    (same value: the ELBO estimate; same gradient), and non-finite losses are left to
    ``fit``'s own check, which reads the loss once per sync window. Returns the negative
    ELBO estimate in nats (summed over the data plate, as Pyro's).
    """

    def _sync_free_particle(self, model_trace, guide_trace):
        # Pyro's _differentiable_loss_particle with ``x.detach()`` where it has
        # ``torch_item(x)`` (one read-back per sample site); the surrogate is the same.
        from pyro.infer.trace_elbo import _compute_log_r
        from pyro.infer.util import is_identically_zero

        def value(v):
            return v.detach() if torch.is_tensor(v) else v

        elbo: torch.Tensor | float = 0.0
        surrogate: torch.Tensor | float = 0.0
        log_r = None
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + value(site["log_prob_sum"])
                surrogate = surrogate + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] != "sample":
                continue
            _, score_function_term, entropy_term = site["score_parts"]
            elbo = elbo - value(site["log_prob_sum"])
            if not is_identically_zero(entropy_term):
                surrogate = surrogate - entropy_term.sum()
            if not is_identically_zero(score_function_term):
                if log_r is None:
                    log_r = _compute_log_r(model_trace, guide_trace)
                downstream = log_r.sum_to(site["cond_indep_stack"])
                surrogate = surrogate + (downstream * score_function_term).sum()
        return -elbo, -surrogate

    def differentiable_loss(self, model, guide, *args, **kwargs):  # noqa: D102
        loss: torch.Tensor | float = 0.0
        surrogate: torch.Tensor | float = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss_p, surrogate_p = self._sync_free_particle(model_trace, guide_trace)
            loss = loss + loss_p / self.num_particles
            surrogate = surrogate + surrogate_p / self.num_particles
        if torch.is_tensor(surrogate):
            return loss + (surrogate - surrogate.detach())
        return loss


def _vectorized(cls):
    def factory(num_particles: int = 1, **kw):
        vec = num_particles > 1
        return cls(num_particles=num_particles, vectorize_particles=vec, **kw)

    return factory


register_estimator("reparam", _vectorized(SyncFreeTrace_ELBO))
register_estimator("analytic-kl", _vectorized(infer.TraceMeanField_ELBO))


def _compiled(num_particles: int = 1, **kw) -> ELBO:
    from .compiled import CompiledTrace_ELBO

    return CompiledTrace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, **kw)


register_estimator("jit", _compiled)
# the default of fit: compiled where the model's structure allows, else Trace_ELBO (with a note)
register_estimator("auto", _compiled)
register_estimator("tracegraph", _vectorized(infer.TraceGraph_ELBO))
register_estimator(
    "enum", lambda num_particles=1, **kw: infer.TraceEnum_ELBO(num_particles=num_particles, **kw)
)


# =====================================================================================
# Score-function estimators on the same guide, STL, IWAE, DReG.
# =====================================================================================


def _nonreparam(fn):
    """Return a shallow copy of distribution ``fn`` that samples without a pathwise gradient.

    Wrappers (``Independent``, masked, expanded, transformed) read ``has_rsample`` from their
    ``base_dist``, so the flag is set on a copy of the innermost base distribution.
    """
    new = copy.copy(fn)
    base = getattr(fn, "base_dist", None)
    if base is not None:
        new.base_dist = _nonreparam(base)
    elif hasattr(new, "has_rsample_"):
        new.has_rsample_(False)
    else:  # a plain torch distribution: has_rsample is a class attribute
        new.has_rsample = False
    return new


class ScoreFunctionMessenger(Messenger):
    """Effect handler: treat every latent sample site as non-reparameterizable.

    Reparameterizable sites (Normal, ...) are sampled without a pathwise gradient, so any
    Pyro ELBO estimates their gradient with the score function (REINFORCE,
    Williams 1992) ``E_q[(log p - log q) grad log q]``. The model and the guide are not
    changed: only the estimator is. ``baseline`` (optional) is written into each site's
    ``infer["baseline"]`` for ``TraceGraph_ELBO``: a dict such as
    ``{"use_decaying_avg_baseline": True, "baseline_beta": 0.9}``, or a callable
    ``baseline(msg) -> dict`` for per-site options (neural baselines).
    """

    def __init__(self, baseline: dict | Callable[[dict], dict] | None = None):
        super().__init__()
        self.baseline = baseline

    def _pyro_sample(self, msg):
        if msg["is_observed"] or site_is_subsample(msg):
            return
        fn = msg["fn"]
        if getattr(fn, "has_rsample", False):
            msg["fn"] = _nonreparam(fn)
        if self.baseline is not None:
            msg["infer"] = dict(msg.get("infer") or {})
            b = self.baseline(msg) if callable(self.baseline) else dict(self.baseline)
            msg["infer"]["baseline"] = b


def score_function(fn: Callable | None = None, baseline: dict | Callable | None = None):
    """Return ``fn`` (a guide) run under :class:`ScoreFunctionMessenger` (usable as a decorator)."""
    msngr = ScoreFunctionMessenger(baseline=baseline)
    return msngr(fn) if fn is not None else msngr


class ScoreFunction_ELBO(infer.Trace_ELBO):
    """The score-function (REINFORCE) ELBO gradient on the user's own guide.

    ``Trace_ELBO`` with the guide wrapped in :func:`score_function`: every latent site
    contributes ``(log p(x, z) - log q(z)) * grad log q(z)``, where the log-ratio is summed
    over the site's plates only (Pyro's plate-level Rao-Blackwellization: data point ``n``'s
    score is multiplied by data point ``n``'s log-ratio). No baseline. The loss value is the
    usual negative ELBO estimate (nats).
    """

    def _get_trace(self, model, guide, args, kwargs):
        return super()._get_trace(model, score_function(guide), args, kwargs)


class _BaselineNet(nn.Module):
    """A small MLP ``x -> scalar baseline per data point`` (Mnih and Gregor 2014)."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).squeeze(-1)


class ScoreFunctionGraph_ELBO(infer.TraceGraph_ELBO):
    """Score-function gradient with Rao-Blackwellization and a baseline (``TraceGraph_ELBO``).

    The guide is wrapped in :func:`score_function`, so reparameterizable sites are treated
    as non-reparameterized. Each latent site's score is multiplied by its *downstream* cost
    minus a baseline (Mnih and Gregor 2014):

    - ``baseline="decaying"``: an exponential moving average of the downstream cost,
      ``b <- beta b + (1 - beta) cost`` (``baseline_beta``), kept in the param store;
    - ``baseline="nn"``: the decaying average plus a per-site MLP ``b(x)`` (``baseline_hidden``
      units) fitted by least squares to the residual downstream cost, trained by the same
      optimizer; its parameters are registered as ``_score_nn_baseline$$$...``. ``x`` is the
      first argument of the guide.
    - ``baseline=None``: no baseline (downstream Rao-Blackwellization only).

    Also offers :meth:`differentiable_loss` (the surrogate, whose value is the negative
    ELBO in nats), so :func:`pyro_gen.inference.gradients.gradient_moments` can use it.
    """

    def __init__(
        self,
        num_particles: int = 1,
        baseline: str | None = "decaying",
        baseline_beta: float = 0.9,
        baseline_hidden: int = 64,
        **kwargs,
    ):
        if baseline not in (None, "decaying", "nn"):
            raise ValueError(f"baseline must be None, 'decaying' or 'nn', got {baseline!r}")
        if not 0.0 <= baseline_beta < 1.0:
            raise ValueError(f"baseline_beta must be in [0, 1), got {baseline_beta}")
        super().__init__(num_particles=num_particles, **kwargs)
        self.baseline = baseline
        self.baseline_beta = float(baseline_beta)
        self.baseline_hidden = int(baseline_hidden)
        self.baseline_nets = nn.ModuleDict()

    def _get_trace(self, model, guide, args, kwargs):
        if self.baseline is None:
            wrapped = score_function(guide)
        elif self.baseline == "decaying":
            opts = {"use_decaying_avg_baseline": True, "baseline_beta": self.baseline_beta}
            wrapped = score_function(guide, baseline=opts)
        else:
            x = args[0]

            def per_site(msg):
                name = msg["name"]
                if name not in self.baseline_nets:
                    self.baseline_nets[name] = self._new_baseline(name, x)
                return {
                    "nn_baseline": self.baseline_nets[name],
                    "nn_baseline_input": x,
                    # the network fits the residual around the running average, so it
                    # need not learn the (large, minibatch-scaled) mean cost from zero
                    "use_decaying_avg_baseline": True,
                    "baseline_beta": self.baseline_beta,
                }

            inner = score_function(guide, baseline=per_site)

            def wrapped(*a, **kw):
                out = inner(*a, **kw)
                pyro.module("_score_nn_baseline", self.baseline_nets)
                return out

        return super()._get_trace(model, wrapped, args, kwargs)

    def _new_baseline(self, site: str, x: torch.Tensor) -> nn.Module:
        """Return the baseline network of ``site``: the saved weights when the param store has them.

        Its initialization draws from a copy of the random state, so creating it (on the
        first step, or again after a resume) never shifts the sampling stream; a resumed
        run's store holds the trained weights, which become the network's own parameters.
        """
        with own_stream((x,)):
            net = _BaselineNet(int(x[0].numel()), self.baseline_hidden)
        store = pyro.get_param_store()
        for pname, p in net.named_parameters():
            full = f"_score_nn_baseline$$${site}.{pname}"
            if full in store:
                with torch.no_grad():
                    p.copy_(store[full])
                del store[full]
                store[full] = p
        return net

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Return a scalar whose value is the negative ELBO (nats) and whose gradient is the estimator's."""
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        elbo = torch.as_tensor(elbo)
        return -elbo.detach() + (surrogate - surrogate.detach())


def _detach_dist(fn):
    """Return a copy of distribution ``fn`` whose parameters are cut from the autograd graph.

    Used by the path-derivative estimators (STL, DReG): ``log q(z)`` is evaluated with
    ``stop_gradient`` on the guide's parameters but not on ``z``. Handles distributions whose
    parameters are tensors in their ``__dict__`` (and wrappers over them); raises for
    transformed distributions with learnable transforms (flows), whose parameters live in
    modules that a copy cannot detach.
    """
    new = copy.copy(fn)
    for key, value in vars(fn).items():
        if torch.is_tensor(value):
            new.__dict__[key] = value.detach()
        elif isinstance(value, torch.distributions.Distribution):
            new.__dict__[key] = _detach_dist(value)
        elif key == "transforms":
            for t in value:
                if isinstance(t, nn.Module) and any(p.requires_grad for p in t.parameters()):
                    raise ValueError(
                        "path-derivative estimators (stl, dreg) cannot detach the parameters of a "
                        f"learnable transform ({type(t).__name__}); use reparam or iwae"
                    )
    return new


def _guide_sites(trace):
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            yield name, site


def refuse_latent_chains(guide_trace, who: str) -> None:
    """Raise ``ValueError`` when a guide site's distribution depends on an earlier latent sample.

    The path-derivative estimators evaluate ``log q`` with every distribution's parameters
    detached; when ``q(z2 | z1)`` is computed from the sample ``z1`` (a hierarchical guide),
    detaching its parameters also cuts the path from ``z2``'s density back through ``z1``,
    which the estimator needs, so the gradient would be biased. Checked by autograd on the
    trace (one backward query per site); returns None when the sites are independent given x.
    """
    earlier: list[tuple[str, torch.Tensor]] = []
    for name, site in _guide_sites(guide_trace):
        params = [v for v in _dist_tensors(site["fn"]) if v.requires_grad]
        values = [v for _, v in earlier]
        if params and values:
            total = sum(p.sum() for p in params)
            grads = torch.autograd.grad(total, values, allow_unused=True, retain_graph=True)
            for (upstream, _), g in zip(earlier, grads, strict=True):
                if g is not None:
                    raise ValueError(
                        f"{who} cannot train a guide whose site {name!r} is computed from the latent "
                        f"sample {upstream!r} (a hierarchical guide): detaching its parameters would cut "
                        "the path through that sample and bias the gradient; use iwae or reparam"
                    )
        if torch.is_tensor(site["value"]) and site["value"].requires_grad:
            earlier.append((name, site["value"]))


def refuse_mixed_supports(model_trace, guide_trace, who: str) -> None:
    """Raise ``ValueError`` when a latent site is discrete in the model but continuous in the guide (or back).

    An importance weight ``p(x, z) / q(z | x)`` divides a probability by a density when the
    guide relaxes a discrete site (a binary Concrete guide for a Bernoulli prior): the ratio
    has no meaning, and the multi-sample bounds built from it neither. Returns None when every
    latent site has the same kind of support (enumerable or not) in both.
    """
    for name, site in _guide_sites(guide_trace):
        if name not in model_trace.nodes:
            continue
        q_discrete = bool(getattr(site["fn"], "has_enumerate_support", False))
        p_discrete = bool(getattr(model_trace.nodes[name]["fn"], "has_enumerate_support", False))
        if q_discrete != p_discrete:
            kinds = ("discrete", "continuous")
            raise ValueError(
                f"{who} weights samples by p(x, z) / q(z | x), but site {name!r} is "
                f"{kinds[not q_discrete]} in the guide ({type(site['fn']).__name__}) and "
                f"{kinds[not p_discrete]} in the model ({type(model_trace.nodes[name]['fn']).__name__})"
            )


def _dist_tensors(fn) -> list[torch.Tensor]:
    out = []
    for value in vars(fn).values():
        if torch.is_tensor(value):
            out.append(value)
        elif isinstance(value, torch.distributions.Distribution):
            out += _dist_tensors(value)
    return out


class STL_ELBO(infer.Trace_ELBO):
    """ "Sticking the landing": the ELBO's path-derivative gradient (Roeder et al. 2017).

    The reparameterized gradient of ``log p(x, z) - log q_phi(z)`` with ``z = g_phi(eps)``
    has a score term ``-grad_phi log q_phi(z)`` (z held fixed) whose expectation is zero.
    STL drops it by evaluating ``log q`` with the guide's parameters detached, keeping the
    dependence through ``z``. Unbiased; its variance vanishes when q equals the exact
    posterior (then ``log p(x, z) - log q(z) = log p(x)`` for every z). Every latent guide
    site must be reparameterizable, and no guide site may be computed from another latent
    sample (hierarchical guides are refused: see :func:`refuse_latent_chains`). Loss value:
    the usual negative ELBO estimate (nats).
    """

    _chains_checked = False

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        if not self._chains_checked:
            refuse_latent_chains(guide_trace, "stl")
            self._chains_checked = True
        elbo = 0.0
        surrogate = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + torch_item(site["log_prob_sum"])
                surrogate = surrogate + site["log_prob_sum"]
        for name, site in _guide_sites(guide_trace):
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"stl needs reparameterizable guide sites; site {name!r} "
                    f"({type(site['fn']).__name__}) is not"
                )
            elbo = elbo - torch_item(site["log_prob_sum"])
            lq = _detach_dist(site["fn"]).log_prob(site["value"])
            surrogate = surrogate - scale_and_mask(lq, site["scale"], site["mask"]).sum()
        return -elbo, -surrogate


class IWAE_ELBO(infer.ELBO):
    """The importance-weighted bound with ``k = num_particles`` samples (Burda et al. 2015).

    Per data point: ``L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)]``, a lower bound on
    ``log p(x)`` that equals the ELBO at ``k = 1`` and increases with ``k``. The gradient is
    the reparameterized gradient of the bound (every latent guide site must be
    reparameterizable and inside the ``"data"`` plate, because the weights are per data
    point). The loss is ``-sum_n L_k(x_n)`` scaled like the data plate (nats); under
    ``fit``'s minibatching it estimates the full-data bound.
    """

    def __init__(self, num_particles: int = 5, **kwargs):
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        super().__init__(num_particles=int(num_particles), **kwargs)
        self._nesting: int | None = None

    _who = "iwae"  # the registered name, in error messages
    _supports_checked = False

    # -------------------------------------------------------------- log weights
    def _traces(self, model, guide, args, kwargs):
        if self._nesting is None:
            # a probe of the structure, on a copy of the random state: when it runs (the first
            # step, or the first after a resume) must not shift the sampling stream
            with own_stream(args), poutine.block():
                tr = poutine.trace(guide).get_trace(*args, **kwargs)
                mtr = poutine.trace(poutine.replay(model, trace=tr)).get_trace(*args, **kwargs)
            self._nesting = plate_nesting(tr, mtr)
        dim = -self._nesting - 1
        plate = pyro.plate("_iwae_particles", self.num_particles, dim=dim)
        guide_tr = poutine.trace(self._wrap_guide(plate(guide))).get_trace(*args, **kwargs)
        model_tr = poutine.trace(poutine.replay(plate(model), trace=guide_tr)).get_trace(*args, **kwargs)
        return model_tr, guide_tr, dim

    def _log_weights(self, model, guide, args, kwargs, detach_guide: bool = False):
        """Return ``(log_p, log_q, scale, guide_trace, dim)``; log_p, log_q are ``(k, B)`` nats."""
        model_tr, guide_tr, dim = self._traces(model, guide, args, kwargs)
        if not self._supports_checked:
            refuse_mixed_supports(model_tr, guide_tr, self._who)
            self._supports_checked = True
        log_p, scale = _per_point(model_tr, dim, self.num_particles, "model", None)
        log_q, _ = _per_point(
            guide_tr, dim, self.num_particles, "guide", _detach_dist if detach_guide else None
        )
        return log_p, log_q, scale, guide_tr, dim

    def _replayed_log_p(self, model, guide_tr, args, kwargs, dim: int) -> torch.Tensor:
        """Return ``log p(x, z)`` as ``(k, B)`` nats with the model replayed on *detached* latents.

        Used where the model's parameters must receive a gradient that the guide's must not
        (PIWAE): the latent values of ``guide_tr`` are cut from the graph, so the result
        depends on the model's parameters only. Runs the model a second time.
        """
        fixed = poutine.Trace()
        for name, site in guide_tr.nodes.items():
            if site["type"] == "sample" and torch.is_tensor(site["value"]):
                site = dict(site, value=site["value"].detach())
            fixed.nodes[name] = site
        plate = pyro.plate("_iwae_particles", self.num_particles, dim=dim)
        model_tr = poutine.trace(poutine.replay(plate(model), trace=fixed)).get_trace(*args, **kwargs)
        log_p, _ = _per_point(model_tr, dim, self.num_particles, "model", None)
        return log_p

    def _wrap_guide(self, guide):
        return guide

    def _get_trace(self, model, guide, args, kwargs):
        model_tr, guide_tr, _ = self._traces(model, guide, args, kwargs)
        return model_tr, guide_tr

    @staticmethod
    def _bound(log_w: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])

    def _check_reparam(self, guide_tr, who: str) -> None:
        for name, site in _guide_sites(guide_tr):
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"{who} needs reparameterizable guide sites; site {name!r} "
                    f"({type(site['fn']).__name__}) is not"
                )

    # -------------------------------------------------------------- ELBO interface
    def loss(self, model, guide, *args, **kwargs) -> float:
        """Return ``-sum_n L_k(x_n)`` (nats, scaled like the data plate) as a float."""
        with torch.no_grad():
            log_p, log_q, scale, _, _ = self._log_weights(model, guide, args, kwargs)
            return -float(scale * self._bound(log_p - log_q).sum())

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Return the negative bound (nats) as a tensor whose gradient is the IWAE gradient."""
        log_p, log_q, scale, guide_tr, _ = self._log_weights(model, guide, args, kwargs)
        self._check_reparam(guide_tr, self._who)
        return -scale * self._bound(log_p - log_q).sum()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate :meth:`differentiable_loss` and return its value (nats)."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())


class DReG_ELBO(IWAE_ELBO):
    """IWAE bound with the doubly reparameterized gradient (Tucker, Lawson, Gu, Maddison 2018).

    Same value as :class:`IWAE_ELBO`. Model parameters get the usual IWAE gradient
    ``sum_i w_i grad_theta log p(x, z_i)`` (normalized weights ``w_i``). Guide parameters get
    ``sum_i w_i^2 (d log w_i / d z_i)(d z_i / d phi)`` with ``log q`` evaluated at detached
    guide parameters: an unbiased estimator of the same gradient whose signal-to-noise ratio
    does not decay with ``k`` (at ``k = 1`` it is STL). Implemented by evaluating ``log q``
    with detached parameters and scaling the gradient that reaches each latent sample
    ``z_i`` by ``w_i`` (a tensor hook), which is exact for guides whose latent values do not
    parameterize other guide sites (a single stochastic layer, as in a VAE); hierarchical
    guides are refused with a ``ValueError`` (see :func:`refuse_latent_chains`).
    """

    _chains_checked = False

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Return the negative bound (nats) as a tensor whose gradient is the DReG estimator."""
        log_p, log_q, scale, guide_tr, dim = self._log_weights(model, guide, args, kwargs, detach_guide=True)
        self._check_reparam(guide_tr, "dreg")
        if not self._chains_checked:
            refuse_latent_chains(guide_tr, "dreg")
            self._chains_checked = True
        log_w = log_p - log_q
        lw = log_w.detach()
        weights = (lw - lw.logsumexp(0, keepdim=True)).exp()  # (k, B); torch.softmax(dim=0) is slow on CPU
        for _, site in _guide_sites(guide_tr):
            z = site["value"]
            if z.requires_grad:
                w = _weights_like(weights, site, dim)
                z.register_hook(lambda g, w=w: g * w)
        return -scale * self._bound(log_w).sum()


class ScoreLOO_ELBO(IWAE_ELBO):
    """Score-function ELBO gradient with the leave-one-out baseline (Kool et al. 2019).

    Draws ``k = num_particles >= 2`` samples per data point from the guide (reparameterizable
    sites treated as non-reparameterized, as in :func:`score_function`) and estimates the
    ELBO gradient as ``(1/k) sum_i [grad f_i + (f_i - b_i) grad log q(z_i)]`` with
    ``f_i = log p(x, z_i) - log q(z_i)`` and baseline ``b_i = mean_{j != i} f_j``: the
    baseline is independent of ``z_i``, so the estimator stays unbiased. The loss value is
    the ``k``-sample average negative ELBO (nats), not the IWAE bound.
    """

    def __init__(self, num_particles: int = 4, **kwargs):
        if int(num_particles) < 2:
            raise ValueError(f"the leave-one-out baseline needs num_particles >= 2, got {num_particles}")
        super().__init__(num_particles=num_particles, **kwargs)

    def _wrap_guide(self, guide):
        # Outside the particle plate, so the plate's broadcasting happens first.
        return score_function(guide)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Return the ``k``-sample average negative ELBO (nats, scaled like the data plate)."""
        with torch.no_grad():
            log_p, log_q, scale, _, _ = self._log_weights(model, guide, args, kwargs)
            return -float(scale * (log_p - log_q).mean(0).sum())

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Return the negative ELBO (nats) as a tensor whose gradient is the LOO estimator."""
        log_p, log_q, scale, _, _ = self._log_weights(model, guide, args, kwargs)
        f = log_p - log_q
        k = f.shape[0]
        fd = f.detach()
        baseline = (fd.sum(0, keepdim=True) - fd) / (k - 1)
        surrogate = (f + (fd - baseline) * log_q).mean(0)
        value = fd.mean(0)
        return -scale * (value + (surrogate - surrogate.detach())).sum()


def _data_frame(name: str, site):
    frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
    if not frames:
        raise ValueError(
            f"site {name!r} is outside the '{DATA_PLATE}' plate: the multi-sample estimators (iwae, dreg, "
            "score-loo, miwae, piwae, ciwae, renyi, vimco, rws) weight samples per data point, so every "
            "sample site must be local to a data point"
        )
    return frames[0]


def _per_point(trace, particle_dim: int, k: int, who: str, transform_fn) -> tuple[torch.Tensor, float]:
    """Sum each sample site's unscaled log-density into ``(k, B)``; return it and the data scale.

    Hand-written because Pyro's traces sum log-densities over all plates or keep them per
    site; the multi-sample bounds need them per (particle, data point).
    """
    total = None
    scale = 1.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if who == "guide" and site["is_observed"]:
            continue
        frame = _data_frame(name, site)
        fn = site["fn"] if transform_fn is None else transform_fn(site["fn"])
        lp = fn.log_prob(site["value"])
        if site["mask"] is not None:
            lp = torch.where(site["mask"], lp, lp.new_zeros(()))
        scale = site["scale"]
        lp = sum_log_prob(lp, particle_dim, frame.dim).expand(k, -1)
        total = lp if total is None else total + lp
    if total is None:
        raise ValueError(f"the {who} has no sample sites")
    return total, float(scale)


def _weights_like(weights: torch.Tensor, site, particle_dim: int) -> torch.Tensor:
    """Reshape ``(k, B)`` weights to broadcast against ``site["value"]``."""
    frame = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE][0]
    batch_ndim = len(site["fn"].batch_shape)
    event_ndim = site["value"].dim() - batch_ndim
    shape = [1] * batch_ndim
    shape[batch_ndim + particle_dim] = weights.shape[0]
    shape[batch_ndim + frame.dim] = weights.shape[1]
    return weights.reshape(shape + [1] * event_ndim)


def _score_graph(baseline):
    def factory(num_particles: int = 1, **kw):
        # A neural baseline returns one value per data point, so its particles run in a loop.
        vec = num_particles > 1 and baseline != "nn"
        return ScoreFunctionGraph_ELBO(
            num_particles=num_particles, vectorize_particles=vec, baseline=baseline, **kw
        )

    return factory


register_estimator("score", _vectorized(ScoreFunction_ELBO))
register_estimator("score-baseline", _score_graph("decaying"))
register_estimator("score-nn", _score_graph("nn"))
register_estimator(
    "score-loo",
    lambda num_particles=1, **kw: ScoreLOO_ELBO(
        num_particles=num_particles if num_particles > 1 else 4, **kw
    ),
)
register_estimator("stl", _vectorized(STL_ELBO))
register_estimator("iwae", lambda num_particles=1, **kw: IWAE_ELBO(num_particles, **kw))
register_estimator("dreg", lambda num_particles=1, **kw: DReG_ELBO(num_particles, **kw))


def _bound_factory(name: str) -> Callable[..., ELBO]:
    def factory(num_particles: int = 1, **kw) -> ELBO:
        from .bounds import make_bound  # imported here: bounds builds on this module

        return make_bound(name, num_particles=num_particles, **kw)

    return factory


def _bound_parser(name: str) -> Callable[[str], dict]:
    def parse(arg: str) -> dict:
        from .bounds import parse_bound_spec

        return parse_bound_spec(name, arg)

    return parse


for _name in ("miwae", "piwae", "ciwae", "renyi", "vimco", "rws"):
    register_estimator(_name, _bound_factory(_name), parse=_bound_parser(_name))
