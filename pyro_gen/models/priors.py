"""Learned priors p(z) for the VAE: a mixture of Gaussians, the VampPrior and a flow on N(0, I).

Each prior is an ``nn.Module`` whose :meth:`distribution` returns a Pyro ``TorchDistribution``
with event shape ``(latent_dim,)`` and an exact ``log_prob`` (nats), so the VAE writes
``pyro.sample("z", prior)`` and every ELBO estimator and the importance-sampled evaluation
use it unchanged:

* :class:`StandardNormalPrior`: ``N(0, I)`` (no parameters).
* :class:`MixturePrior`: ``sum_k pi_k N(z; mu_k, diag sigma_k^2)`` with learned weights
  (softmax of logits), means and scales (softplus) of ``K`` components.
* :class:`VampPrior` (Tomczak and Welling 2018): ``(1/K) sum_k q(z | u_k)``, the encoder's
  Gaussian posteriors at ``K`` learned pseudo-inputs ``u_k``; uniform weights as in the paper.
* :class:`FlowPrior`: a normalizing flow (:class:`~pyro_gen.models.flows.FlowDensity`:
  MAF blocks by default) on a standard normal base; log-density by the change of variables.

None of these has a closed-form KL to a Gaussian guide: Pyro's ``TraceMeanField_ELBO``
(estimator ``analytic-kl``) catches the ``NotImplementedError`` of ``kl_divergence`` and
falls back, site by site, to the single-sample Monte Carlo term ``log p(z) - log q(z | x)``
(the same estimate as ``Trace_ELBO``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from torch import nn

from .flows import FlowDensity

PRIORS = ("normal", "mog", "vamp", "flow")
VAMP_INITS = ("data", "random")
#: flows whose blocks start at the identity (the conditioner's last layer zeroed)
IDENTITY_FLOWS = ("maf", "affine_coupling", "masked_coupling")


def _inverse_softplus(x: float) -> float:
    return float(torch.tensor(x).expm1().log())


class DiagonalGaussianMixture(dist.MixtureSameFamily):
    """``sum_k softmax(logits)_k N(loc_k, diag scale_k^2)`` whose ``log_prob`` avoids the
    ``(..., K, latent_dim)`` tensor of :class:`~torch.distributions.MixtureSameFamily`.

    The Gaussian exponents of all ``K`` components come from two matrix products (``sum_d
    z_d^2 / s_kd^2 - 2 z_d m_kd / s_kd^2 + m_kd^2 / s_kd^2``), computed in float64 so that the
    expansion loses no precision when a component is narrow, and returned in the input's
    dtype. Sampling is :class:`~torch.distributions.MixtureSameFamily`'s. ``log_prob`` is in
    nats, exact (the same value as the direct sum up to float64 rounding), and differentiable
    in ``z``, the locations, scales and logits.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Return ``log sum_k pi_k N(value; loc_k, diag scale_k^2)`` (shape ``value.shape[:-1]``, nats)."""
        if self._validate_args:
            self._validate_sample(value)
        base = self.component_distribution.base_dist
        loc, scale, logits = base.loc, base.scale, self.mixture_distribution.logits
        if loc.dim() > 2:  # expanded by a plate: one (K, D) table broadcast, or a general batch
            params = (loc, scale, logits)
            if not all(all(st == 0 for st in t.stride()[: t.dim() - e]) for t, e in zip(params, (2, 2, 1))):
                return super().log_prob(value)
            loc, scale, logits = (t[(0,) * (t.dim() - e)] for t, e in zip(params, (2, 2, 1)))
        loc, scale = loc.double(), scale.double()
        z = value.double()
        precision = scale.pow(-2)  # (K, D)
        quad = (
            (z * z) @ precision.transpose(-1, -2)
            - 2.0 * z @ (loc * precision).transpose(-1, -2)
            + (loc * loc * precision).sum(-1)
        ).clamp_min(0.0)
        dim = loc.shape[-1]
        log_norm = scale.log().sum(-1) + 0.5 * dim * math.log(2 * math.pi)
        log_weights = torch.log_softmax(logits.double(), -1)
        return torch.logsumexp(log_weights - log_norm - 0.5 * quad, -1).to(value.dtype)


def mixture(logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    """Return ``sum_k softmax(logits)_k N(loc_k, diag scale_k^2)`` with event shape ``(latent_dim,)``.

    ``logits`` ``(K,)``, ``loc`` and ``scale`` ``(K, latent_dim)``; ``log_prob`` is the exact
    log-sum-exp over the components (nats), by :class:`DiagonalGaussianMixture`.
    """
    if logits.dim() != 1 or loc.dim() != 2 or scale.shape != loc.shape or loc.shape[0] != logits.shape[0]:
        raise ValueError(
            f"mixture needs logits (K,) and loc, scale (K, latent_dim); got {tuple(logits.shape)}, "
            f"{tuple(loc.shape)}, {tuple(scale.shape)}"
        )
    return DiagonalGaussianMixture(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))


class StandardNormalPrior(nn.Module):
    """The standard normal prior ``N(0, I)`` over ``latent_dim`` dimensions (no parameters)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def distribution(self, encoder: Callable | None = None) -> dist.TorchDistribution:
        """Return ``N(0, I)`` with event shape ``(latent_dim,)`` (``encoder`` is not used)."""
        return dist.Normal(self.loc, self.scale).to_event(1)


class MixturePrior(nn.Module):
    """A mixture of ``num_components`` diagonal Gaussians with learned weights, means and scales.

    The means start at draws from ``N(0, I)`` (seeded by ``seed``), the scales at 1 and the
    weights uniform. The scales are ``softplus(raw) + 1e-4`` (positive).
    """

    def __init__(self, latent_dim: int, num_components: int = 10, seed: int = 0):
        super().__init__()
        if num_components < 1:
            raise ValueError(f"--prior-components must be a positive integer, got {num_components}")
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.locs = nn.Parameter(torch.randn(num_components, latent_dim, generator=g))
        self.raw_scales = nn.Parameter(torch.full((num_components, latent_dim), _inverse_softplus(1.0)))

    def scales(self) -> torch.Tensor:
        """Return the components' standard deviations ``(K, latent_dim)``."""
        return nn.functional.softplus(self.raw_scales) + 1e-4

    def distribution(self, encoder: Callable | None = None) -> dist.TorchDistribution:
        """Return the mixture with event shape ``(latent_dim,)`` (``encoder`` is not used)."""
        return mixture(self.logits, self.locs, self.scales())


class VampPrior(nn.Module):
    """The VampPrior: ``p(z) = (1/K) sum_k q(z | u_k)`` with ``K`` learned pseudo-inputs ``u_k``.

    ``distribution(encoder)`` passes the pseudo-inputs through the VAE's own encoder (a
    callable returning ``(loc, scale)``), so the prior moves with the encoder during training.
    For data in [0, 1] (``unit_interval=True``) the pseudo-inputs are ``hardtanh(raw, 0, 1)``
    as in the authors' code. ``init="data"`` starts them at ``K`` training points drawn with
    ``seed`` plus ``N(0, 0.01^2)`` noise (``data`` is required); ``init="random"`` at
    ``N(0.05, 0.01^2)`` per pixel (the authors' MNIST setting) or, off the unit interval,
    at ``N(0, 1)``.
    """

    def __init__(
        self,
        input_dim: int,
        num_components: int = 10,
        init: str = "data",
        data: torch.Tensor | None = None,
        unit_interval: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if num_components < 1:
            raise ValueError(f"--prior-components must be a positive integer, got {num_components}")
        if init not in VAMP_INITS:
            raise ValueError(f"--vamp-init must be one of {VAMP_INITS}, got {init!r}")
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(num_components, input_dim, generator=g)
        if init == "data":
            if data is None or data.dim() != 2 or data.shape[1] != input_dim or data.shape[0] == 0:
                raise ValueError(f"the VampPrior's data initialization needs training data (N, {input_dim})")
            rows = torch.randint(data.shape[0], (num_components,), generator=g)
            start = data[rows].float() + 0.01 * noise
        elif unit_interval:
            start = 0.05 + 0.01 * noise
        else:
            start = noise
        self.unit_interval = bool(unit_interval)
        self.raw_inputs = nn.Parameter(start)

    def pseudo_inputs(self) -> torch.Tensor:
        """Return the pseudo-inputs ``(K, input_dim)`` (clamped to [0, 1] for unit-interval data)."""
        if self.unit_interval:
            return nn.functional.hardtanh(self.raw_inputs, 0.0, 1.0)
        return self.raw_inputs

    def distribution(self, encoder: Callable | None = None) -> dist.TorchDistribution:
        """Return the uniform mixture of ``encoder``'s Gaussians at the pseudo-inputs (event: latent_dim)."""
        if encoder is None:
            raise ValueError("the VampPrior needs the encoder: distribution(encoder)")
        loc, scale = encoder(self.pseudo_inputs())
        return mixture(torch.zeros(loc.shape[0], device=loc.device, dtype=loc.dtype), loc, scale)


class FlowPrior(nn.Module):
    """A flow prior: ``z = T(u)``, ``u ~ N(0, I)``, ``T`` a stack of ``depth`` blocks of ``transform``.

    Built on :class:`~pyro_gen.models.flows.FlowDensity` (MAF blocks by default, whose cheap
    direction evaluates the density; sampling runs the other one). Affine kinds start at the
    identity (so the prior starts as ``N(0, I)``). ``log_prob`` is exact: ``log N(T^{-1}(z))
    + log |det d T^{-1} / dz|`` in nats.
    """

    def __init__(
        self,
        latent_dim: int,
        transform: str = "maf",
        depth: int = 4,
        hidden: Sequence[int] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"--prior-flow-depth must be a positive integer, got {depth}")
        width = max(64, 2 * latent_dim)
        hidden = [width, width] if hidden is None else [int(h) for h in hidden]
        self.flow = FlowDensity(
            latent_dim,
            transform=transform,
            depth=depth,
            hidden=hidden,
            identity_init=transform in IDENTITY_FLOWS,
            seed=seed,
        )

    def distribution(self, encoder: Callable | None = None) -> dist.TorchDistribution:
        """Return the flow's distribution over ``z`` (event ``(latent_dim,)``; ``encoder`` not used)."""
        self.flow.clear_cache()
        return self.flow.continuous()


def make_prior(
    kind: str,
    latent_dim: int,
    *,
    input_dim: int | None = None,
    num_components: int = 10,
    flow: str = "maf",
    flow_depth: int = 4,
    vamp_init: str = "data",
    data: torch.Tensor | None = None,
    unit_interval: bool = True,
    seed: int = 0,
) -> nn.Module:
    """Return the prior module named ``kind`` (one of :data:`PRIORS`) over ``latent_dim`` dimensions.

    ``num_components`` is K of ``mog`` and ``vamp``; ``flow`` and ``flow_depth`` the blocks
    of ``flow``; ``input_dim``, ``vamp_init``, ``data`` and ``unit_interval`` configure the
    VampPrior's pseudo-inputs. ``ValueError`` for an unknown kind or bad settings.
    """
    if kind not in PRIORS:
        raise ValueError(f"--prior must be one of {PRIORS}, got {kind!r}")
    if kind == "normal":
        return StandardNormalPrior(latent_dim)
    if kind == "mog":
        return MixturePrior(latent_dim, num_components, seed=seed)
    if kind == "vamp":
        if input_dim is None:
            raise ValueError("the VampPrior needs input_dim (the pseudo-inputs' size)")
        return VampPrior(input_dim, num_components, vamp_init, data, unit_interval, seed=seed)
    return FlowPrior(latent_dim, flow, flow_depth, seed=seed)
