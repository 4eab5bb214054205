"""Multi-sample bounds beyond IWAE and multi-sample estimators for discrete latents.

Every class is an :class:`~pyro_gen.inference.estimators.IWAE_ELBO` subclass: the guide is
run once under a particle plate, the log-weights ``log w = log p(x, z) - log q(z | x)`` are
kept per (sample, data point) as a ``(S, B)`` tensor (nats), and each class turns them into
a bound and a surrogate whose gradient is its estimator. Loss values are the negative bound
summed over the data plate and scaled like it (nats); ``fit`` divides by the data size.

- :class:`MIWAE_ELBO`, :class:`PIWAE_ELBO`, :class:`CIWAE_ELBO`: Rainforth, Kosiorek, Le,
  Maddison, Igl, Wood and Teh 2018, "Tighter variational bounds are not necessarily better";
- :class:`Renyi_ELBO`: Li and Turner 2016, "Renyi divergence variational inference";
- :class:`VIMCO_ELBO`: Mnih and Rezende 2016, "Variational inference for Monte Carlo
  objectives";
- :class:`RWS_ELBO`: Bornschein and Bengio 2015, "Reweighted wake-sleep" (wake and sleep phases).

Spec syntax (``make_estimator``, ``--estimator``): ``miwae:MxK``, ``piwae:MxK``,
``ciwae:K:beta``, ``renyi:K:alpha``, ``vimco:K``, ``rws:K`` or ``rws:K:insomnia``; a bare
name takes the defaults below, with ``K = num_particles`` when that is above one.
"""

from __future__ import annotations

import math

import pyro.poutine as poutine
import torch

from .estimators import IWAE_ELBO, score_function

DEFAULTS: dict[str, dict] = {
    "miwae": {"outer": 8, "inner": 8},
    "piwae": {"outer": 8, "inner": 8},
    "ciwae": {"num_particles": 64, "beta": 0.5},
    "renyi": {"num_particles": 5, "alpha": 0.5},
    "vimco": {"num_particles": 5},
    "rws": {"num_particles": 5},
}
"""The settings a bare name takes (``miwae`` = ``miwae:8x8``, ``ciwae`` = ``ciwae:64:0.5``, ...)."""

SYNTAX = {
    "miwae": "MxK (outer x inner samples, e.g. miwae:8x8)",
    "piwae": "MxK (outer x inner samples, e.g. piwae:8x8)",
    "ciwae": "K or K:beta with beta in [0, 1] (e.g. ciwae:64:0.5)",
    "renyi": "K or K:alpha (e.g. renyi:5:0.5)",
    "vimco": "K >= 2 (e.g. vimco:5)",
    "rws": "K >= 2 or K:insomnia with insomnia in [0, 1] (e.g. rws:5, rws:5:0.5)",
}


def _positive_int(text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what} must be a positive integer, got {text!r}")
    return int(text)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {text!r}")
    return value


def parse_bound_spec(name: str, arg: str) -> dict:
    """Return the keyword arguments that the text after ``name:`` in a spec names.

    ``miwae``/``piwae``: ``"MxK"`` -> ``{"outer": M, "inner": K}``; ``ciwae``: ``"K"`` or
    ``"K:beta"`` -> ``{"samples": K, "beta": beta}``; ``renyi``: ``"K"`` or ``"K:alpha"``;
    ``vimco``: ``"K"``; ``rws``: ``"K"`` or ``"K:insomnia"``. Raises ``ValueError`` naming the syntax.
    """
    if name not in SYNTAX:
        raise ValueError(f"no bound named {name!r}; choose one of {', '.join(SYNTAX)}")
    try:
        if name in ("miwae", "piwae"):
            m, x, k = arg.partition("x")
            if not x:
                raise ValueError(f"{name} needs both sample counts, got {arg!r}")
            return {"outer": _positive_int(m, "M"), "inner": _positive_int(k, "K")}
        k, colon, rest = arg.partition(":")
        out: dict = {"samples": _positive_int(k, "K")}
        if name in ("ciwae", "renyi", "rws"):
            if colon:
                key = {"ciwae": "beta", "renyi": "alpha", "rws": "insomnia"}[name]
                out[key] = _number(rest, key)
        elif colon:
            raise ValueError(f"{name} takes only the sample count, got {arg!r}")
        return out
    except ValueError as e:
        raise ValueError(f"{e}; the syntax is {name}:{SYNTAX[name]}") from None


def make_bound(name: str, num_particles: int = 1, **kwargs) -> IWAE_ELBO:
    """Return the ELBO registered as ``name`` (miwae, piwae, ciwae, renyi, vimco or rws).

    ``samples`` (a spec's ``K``) sets the sample count; otherwise ``num_particles > 1`` sets
    ``K`` (the inner count for ``miwae``/``piwae``); unset settings take :data:`DEFAULTS`.
    """
    cls = {
        "miwae": MIWAE_ELBO,
        "piwae": PIWAE_ELBO,
        "ciwae": CIWAE_ELBO,
        "renyi": Renyi_ELBO,
        "vimco": VIMCO_ELBO,
        "rws": RWS_ELBO,
    }.get(name)
    if cls is None:
        raise ValueError(f"no bound named {name!r}; choose one of {', '.join(DEFAULTS)}")
    settings = dict(DEFAULTS[name])
    if num_particles > 1:
        settings["inner" if name in ("miwae", "piwae") else "num_particles"] = num_particles
    samples = kwargs.pop("samples", None)
    if samples is not None:
        settings["num_particles"] = samples
    settings.update(kwargs)
    return cls(**settings)


def _log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


class MIWAE_ELBO(IWAE_ELBO):
    """The multiply importance weighted bound MIWAE(M, K) (Rainforth et al. 2018).

    Per data point: ``(1/M) sum_m log (1/K) sum_k w_mk`` with ``M K`` independent samples
    ``z_mk ~ q(z | x)``: the average of ``M`` IWAE bounds of ``K`` samples each. ``M = 1`` is
    IWAE with ``K`` samples, ``K = 1`` the ELBO averaged over ``M`` samples. Its expectation
    lies between the ELBO and the IWAE bound of ``M K`` samples; more outer samples raise the
    signal-to-noise ratio of the guide's gradient, more inner samples tighten the bound. The
    gradient is the reparameterized one (every latent guide site must be reparameterizable
    and inside the data plate). Loss: ``-sum_n MIWAE(x_n)`` scaled like the data plate (nats).
    """

    _who = "miwae"

    def __init__(self, outer: int = 8, inner: int = 8, **kwargs):
        if int(outer) < 1 or int(inner) < 1:
            raise ValueError(f"{self._who} needs M >= 1 and K >= 1 samples, got M={outer}, K={inner}")
        self.outer, self.inner = int(outer), int(inner)
        super().__init__(num_particles=self.outer * self.inner, **kwargs)

    def _miwae(self, log_w: torch.Tensor) -> torch.Tensor:
        """Return the ``(B,)`` MIWAE bound of ``(M K, B)`` log-weights (nats)."""
        grouped = log_w.reshape(self.outer, self.inner, *log_w.shape[1:])
        return _log_mean_exp(grouped, dim=1).mean(0)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return self._miwae(log_w)


class PIWAE_ELBO(MIWAE_ELBO):
    """Partially importance weighted training, PIWAE(M, K) (Rainforth et al. 2018).

    One set of ``M K`` samples per data point, two objectives, each parameter set on its own
    gradient: the model's parameters ``theta`` ascend the IWAE bound of all ``M K`` samples,
    ``sum_i w_i grad_theta log p(x, z_i)`` (weights normalized over the ``M K`` samples), and
    the guide's parameters ``phi`` ascend MIWAE(M, K) by its reparameterized gradient. One
    surrogate carries both: the MIWAE bound plus ``sum_i (w_i^IWAE - w_i^MIWAE) log p(x, z_i)``
    with the weights constant and ``log p`` evaluated on detached latents (the model is run a
    second time), whose gradient reaches ``theta`` only. Assumes the model and guide share no
    parameters. Loss value: the negative IWAE bound of ``M K`` samples (nats, scaled like the
    data plate), the bound the model is trained on.
    """

    _who = "piwae"

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Return ``-sum_n IWAE_{MK}(x_n)`` (nats, scaled like the data plate) as a float."""
        with torch.no_grad():
            log_p, log_q, scale, _, _ = self._log_weights(model, guide, args, kwargs)
            return -float(scale * _log_mean_exp(log_p - log_q).sum())

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Return the negative IWAE bound (nats); gradient: IWAE's for the model, MIWAE's for the guide."""
        log_p, log_q, scale, guide_tr, dim = self._log_weights(model, guide, args, kwargs)
        self._check_reparam(guide_tr, self._who)
        log_w = log_p - log_q
        lw = log_w.detach()
        w_iwae = (lw - lw.logsumexp(0, keepdim=True)).exp()
        grouped = lw.reshape(self.outer, self.inner, -1)
        w_miwae = ((grouped - grouped.logsumexp(1, keepdim=True)).exp() / self.outer).reshape(lw.shape)
        log_p_model = self._replayed_log_p(model, guide_tr, args, kwargs, dim)
        surrogate = self._miwae(log_w) + ((w_iwae - w_miwae) * log_p_model).sum(0)
        value = _log_mean_exp(lw)
        return -scale * (value + (surrogate - surrogate.detach())).sum()


class CIWAE_ELBO(IWAE_ELBO):
    """The combination bound CIWAE(beta) = beta ELBO + (1 - beta) IWAE (Rainforth et al. 2018).

    Per data point, on the same ``K`` samples: ``beta (1/K) sum_k log w_k + (1 - beta) log
    (1/K) sum_k w_k`` with ``beta`` in [0, 1]: the ELBO at ``beta = 1``, the IWAE bound at
    ``beta = 0``. The ELBO term keeps the guide's gradient signal from vanishing as ``K``
    grows. Reparameterized gradient (latent guide sites reparameterizable, inside the data
    plate). Loss: ``-sum_n CIWAE(x_n)`` scaled like the data plate (nats).
    """

    _who = "ciwae"

    def __init__(self, num_particles: int = 64, beta: float = 0.5, **kwargs):
        beta = float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"ciwae's beta must be in [0, 1], got {beta}")
        self.beta = beta
        super().__init__(num_particles=num_particles, **kwargs)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return self.beta * log_w.mean(0) + (1.0 - self.beta) * _log_mean_exp(log_w)


class Renyi_ELBO(IWAE_ELBO):
    """The Renyi alpha bound with ``K`` samples, per data point (Li and Turner 2016).

    ``L_alpha(x) = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha)``: for ``alpha = 0`` the IWAE
    bound, in the limit ``alpha -> 1`` (and at ``alpha = 1`` exactly) the ELBO; for ``K = 1``
    the ELBO whatever ``alpha``. For ``0 <= alpha`` its expectation is a lower bound on
    ``log p(x)`` that decreases with ``alpha``; for ``alpha < 0`` the exact objective lies
    above ``log p(x)`` and the estimate is no bound. Reparameterized gradient
    ``sum_k w~_k grad log w_k`` with ``w~ ~ w^(1 - alpha)`` normalized (VR-alpha). Loss:
    ``-sum_n L_alpha(x_n)`` scaled like the data plate (nats).

    Pyro's ``RenyiELBO`` computes the same quantity only without subsampling: it multiplies
    each log-weight by the data plate's scale ``N / B`` before the log-mean-exp (so under
    minibatches it optimizes another objective), offers no ``differentiable_loss``, and its
    score-function branch keeps only an ``alpha / (1 - alpha)`` term; this class scales after
    the per-point bound, as IWAE does.
    """

    _who = "renyi"

    def __init__(self, num_particles: int = 5, alpha: float = 0.5, **kwargs):
        alpha = float(alpha)
        if not math.isfinite(alpha):
            raise ValueError(f"renyi's alpha must be finite, got {alpha}")
        self.alpha = alpha
        super().__init__(num_particles=num_particles, **kwargs)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        if self.alpha == 1.0:
            return log_w.mean(0)
        return _log_mean_exp((1.0 - self.alpha) * log_w) / (1.0 - self.alpha)


class VIMCO_ELBO(IWAE_ELBO):
    """VIMCO: the IWAE bound's score-function gradient with leave-one-out learning signals.

    Mnih and Rezende 2016. With ``K >= 2`` samples ``z_k ~ q(z | x)`` per data point (every
    latent site sampled without a pathwise gradient, as in :func:`score_function`: discrete
    guides, or any guide), ``L = log (1/K) sum_k w_k`` and the gradient estimate

        ``sum_k (L - L_{-k}) grad_phi log q(z_k) + sum_k w~_k grad log w_k``,

    where ``L_{-k}`` replaces ``log w_k`` by the mean of the other samples' log-weights (a
    baseline independent of ``z_k``, so the estimator stays unbiased for the gradient of
    ``E[L]``) and ``w~`` are the normalized weights. The model's parameters get the IWAE
    gradient ``sum_k w~_k grad_theta log p(x, z_k)``. Loss: the negative IWAE bound of ``K``
    samples, scaled like the data plate (nats).
    """

    _who = "vimco"

    def __init__(self, num_particles: int = 5, **kwargs):
        if int(num_particles) < 2:
            raise ValueError(f"{self._who} needs K >= 2 samples (leave-one-out), got {num_particles}")
        super().__init__(num_particles=num_particles, **kwargs)

    def _wrap_guide(self, guide):
        # outside the particle plate, so the plate's broadcasting happens first
        return score_function(guide)

    @staticmethod
    def learning_signals(log_w: torch.Tensor) -> torch.Tensor:
        """Return ``L - L_{-k}`` for ``(K, B)`` log-weights: VIMCO's per-sample signal, ``(K, B)`` nats."""
        k = log_w.shape[0]
        others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # (K, B): mean of the rest
        eye = torch.eye(k, dtype=torch.bool, device=log_w.device).unsqueeze(-1)  # (K, K, 1)
        # row j: the K log-weights with entry j replaced by the mean of the others
        loo = torch.where(eye, others.unsqueeze(1), log_w.unsqueeze(0))
        return _log_mean_exp(log_w).unsqueeze(0) - _log_mean_exp(loo, dim=1)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Return the negative IWAE bound (nats) as a tensor whose gradient is the VIMCO estimator."""
        log_p, log_q, scale, _, _ = self._log_weights(model, guide, args, kwargs)
        log_w = log_p - log_q
        signal = self.learning_signals(log_w.detach())
        surrogate = _log_mean_exp(log_w) + (signal * log_q).sum(0)
        value = _log_mean_exp(log_w.detach())
        return -scale * (value + (surrogate - surrogate.detach())).sum()


class RWS_ELBO(IWAE_ELBO):
    """Reweighted wake-sleep (Bornschein and Bengio 2015).

    With ``K >= 2`` samples ``z_k ~ q(z | x)`` per data point (no pathwise gradient: every
    latent site is sampled as in :func:`score_function`) and normalized weights ``w~_k``:

    - wake-theta: the model's parameters ascend ``sum_k w~_k grad_theta log p(x, z_k)``, the
      gradient of the IWAE bound with respect to ``theta``;
    - wake-phi: the guide's parameters ascend ``sum_k w~_k grad_phi log q(z_k | x)``, a
      self-normalized estimate of ``-grad_phi KL(p(z | x) || q(z | x))`` (biased for finite
      ``K``, consistent as ``K`` grows): the guide is fitted to the posterior, not to the bound;
    - sleep-phi (when ``insomnia < 1``): one dream ``(z', x') ~ p(z, x)`` per data point and
      ``grad_phi log q(z' | x')``, an unbiased estimate of ``-grad_phi E_p(x) KL(p(z | x) || q)``
      under the model's own data. The guide's gradient is ``insomnia`` wake-phi plus
      ``1 - insomnia`` sleep-phi (Pyro's convention; ``insomnia = 1``, the default, is wake
      only; the paper's "wake + sleep" is 0.5). Dreams need a model with one observed site whose
      value takes the place of the guide's first argument (as in every model here).

    One surrogate ``sum_k w~_k (log p(x, z_k) + insomnia log q(z_k | x))`` (plus the sleep term)
    with constant weights routes each part to its parameters (``log p`` does not depend on
    ``phi`` once the samples carry no path, ``log q`` not on ``theta``; the model and guide
    share no parameters). Loss: the negative IWAE bound of ``K`` samples, scaled like the data
    plate (nats).
    """

    _who = "rws"

    def __init__(self, num_particles: int = 5, insomnia: float = 1.0, **kwargs):
        if int(num_particles) < 2:
            raise ValueError(
                f"{self._who} needs K >= 2 samples (self-normalized weights), got {num_particles}"
            )
        insomnia = float(insomnia)
        if not 0.0 <= insomnia <= 1.0:
            raise ValueError(
                f"rws's insomnia (the wake share of the guide's gradient) must be in [0, 1], got {insomnia}"
            )
        self.insomnia = insomnia
        super().__init__(num_particles=num_particles, **kwargs)

    def _wrap_guide(self, guide):
        return score_function(guide)

    def sleep_log_q(self, model, guide, args, kwargs) -> torch.Tensor:
        """Return ``sum_n log q(z'_n | x'_n)``, one dream per data point, scaled like the data plate (nats).

        The dream ``(z', x')`` is drawn from the model with its observed site unconditioned
        (values detached, so only the guide's parameters get a gradient) and ``x'`` replaces the
        guide's first argument.
        """
        dream = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
        observed = [
            n
            for n, site in dream.nodes.items()
            if site["type"] == "sample" and site["infer"].get("was_observed")
        ]
        x = args[0] if args else None
        if len(observed) != 1 or not torch.is_tensor(x) or dream.nodes[observed[0]]["value"].shape != x.shape:
            raise ValueError(
                "rws's sleep phase needs a model with one observed site shaped like the guide's first "
                f"argument (found observed sites {observed}); use insomnia 1 (rws:K)"
            )
        fixed = poutine.Trace()
        for name, site in dream.nodes.items():
            if site["type"] == "sample" and torch.is_tensor(site["value"]):
                site = dict(site, value=site["value"].detach())
            fixed.nodes[name] = site
        x_dream = fixed.nodes[observed[0]]["value"]
        guide_tr = poutine.trace(poutine.replay(guide, trace=fixed)).get_trace(x_dream, *args[1:], **kwargs)
        total = x.new_zeros(())
        for name, site in guide_tr.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and name in dream.nodes:
                lq = site["fn"].log_prob(site["value"])
                if site["mask"] is not None:
                    lq = torch.where(site["mask"], lq, lq.new_zeros(()))
                total = total + site["scale"] * lq.sum()
        return total

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Return the negative IWAE bound (nats) as a tensor whose gradient is wake-theta and phi's phases."""
        log_p, log_q, scale, _, _ = self._log_weights(model, guide, args, kwargs)
        lw = (log_p - log_q).detach()
        weights = (lw - lw.logsumexp(0, keepdim=True)).exp()
        surrogate = scale * (weights * (log_p + self.insomnia * log_q)).sum()
        if self.insomnia < 1.0:
            surrogate = surrogate + (1.0 - self.insomnia) * self.sleep_log_q(model, guide, args, kwargs)
        value = scale * _log_mean_exp(lw).sum()
        return -(value + (surrogate - surrogate.detach()))
