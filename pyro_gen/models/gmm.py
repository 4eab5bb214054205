"""Bayesian Gaussian mixture as a Pyro model with enumerated assignments, plus its guides.

Generative story (K components, D dimensions)::

    weights ~ Dirichlet(concentration * 1_K)
    for k in 1..K:  locs_k ~ Normal(prior_loc, prior_scale)^D
                    scales_k ~ LogNormal(log scale0, 1)^D            (per-dimension std)
                    corr_k ~ LKJCholesky(D, eta)                      (covariance_type="full")
    for n in 1..N:  z_n ~ Categorical(weights)                        (enumerated, never sampled)
                    x_n ~ Normal(locs_{z_n}, diag(scales_{z_n}) corr_{z_n} ...)

The local assignments ``z_n`` are marked for parallel enumeration (``config_enumerate``), so
``TraceEnum_ELBO`` sums them out exactly and the guides only cover the globals (``weights``,
``locs``, ``scales``, ``corr_chol``). ``infer_discrete`` recovers MAP or sampled assignments.
With ``marginalized=True`` the same joint density is written with ``MixtureSameFamily`` (no
discrete site at all): that is the form NUTS runs on, and a test checks both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate, infer_discrete
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value

from .base import data_plate

GLOBAL_SITES = ("weights", "locs", "scales", "corr_chol")
COVARIANCE_TYPES = ("full", "diag")


@dataclass
class MixtureParameters:
    """Plain parameters of a Gaussian mixture: ``weights`` (K,), ``locs`` (K, D), ``covariances`` (K, D, D).

    The common currency of the comparison: every method (EM, MAP, variational, NUTS) ends
    as one of these (or a set of posterior draws of them).
    """

    weights: torch.Tensor
    locs: torch.Tensor
    covariances: torch.Tensor

    def __post_init__(self) -> None:
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        self.locs = torch.as_tensor(self.locs, dtype=torch.float64)
        cov = torch.as_tensor(self.covariances, dtype=torch.float64)
        k, d = self.locs.shape
        if cov.shape == (k, d):
            cov = torch.diag_embed(cov)
        elif cov.shape == (k,):
            cov = cov[:, None, None] * torch.eye(d, dtype=cov.dtype)
        if self.weights.shape != (k,) or cov.shape != (k, d, d):
            raise ValueError(
                f"inconsistent mixture shapes: weights {tuple(self.weights.shape)}, locs {(k, d)}, "
                f"covariances {tuple(cov.shape)}"
            )
        self.covariances = cov

    @property
    def num_components(self) -> int:
        """Number of components K."""
        return int(self.locs.shape[0])

    @property
    def dim(self) -> int:
        """Dimension D of one data point."""
        return int(self.locs.shape[1])

    def distribution(self) -> dist.MixtureSameFamily:
        """Return the mixture as a ``MixtureSameFamily`` distribution over D-vectors (float64)."""
        return dist.MixtureSameFamily(
            dist.Categorical(probs=self.weights),
            dist.MultivariateNormal(self.locs, covariance_matrix=self.covariances),
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``log p(x_n)`` per row of ``x`` as an (N,) float64 tensor, in nats."""
        return self.distribution().log_prob(torch.as_tensor(x, dtype=torch.float64))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Return the responsibilities ``p(z_n = k | x_n)`` as an (N, K) tensor."""
        x = torch.as_tensor(x, dtype=torch.float64)
        comp = dist.MultivariateNormal(self.locs, covariance_matrix=self.covariances)
        return torch.softmax(comp.log_prob(x[:, None, :]) + self.weights.log(), dim=-1)

    def sample(self, num: int) -> torch.Tensor:
        """Draw ``num`` points (a (num, D) float32 tensor) with the global torch RNG."""
        return self.distribution().sample((num,)).float()

    def permute(self, perm: torch.Tensor) -> MixtureParameters:
        """Return the same mixture with components reordered by ``perm`` (new k = old perm[k])."""
        return MixtureParameters(self.weights[perm], self.locs[perm], self.covariances[perm])

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Return the tensors by name (for ``torch.save``)."""
        return {"weights": self.weights, "locs": self.locs, "covariances": self.covariances}


def mixture_log_likelihood(x: torch.Tensor, params: MixtureParameters) -> float:
    """Return the average log-likelihood of ``x`` under ``params`` in nats per data point."""
    return float(params.log_prob(x).mean())


class GaussianMixtureModel:
    """The Bayesian Gaussian mixture above: ``.model(x)``, MAP/variational guides, assignments.

    ``num_components`` K, ``dim`` D, ``covariance_type`` ``"full"`` (LKJ-Cholesky prior on
    the correlations) or ``"diag"``. Priors are weak and placed on the data's scale:
    ``prior_loc``/``prior_scale`` (defaults 0 and 10 per dimension; :meth:`from_data` uses
    the data mean and 2x the data range), ``scale0`` the median prior std of a component
    (LogNormal with log-scale 1), ``concentration`` of the Dirichlet on the weights, ``eta``
    of the LKJ prior. ``marginalized=True`` writes the likelihood with ``MixtureSameFamily``
    instead of an enumerated assignment site (same density, no discrete site: for NUTS).
    """

    def __init__(
        self,
        num_components: int,
        dim: int,
        covariance_type: str = "full",
        prior_loc: torch.Tensor | float = 0.0,
        prior_scale: torch.Tensor | float = 10.0,
        scale0: torch.Tensor | float = 1.0,
        concentration: float = 1.0,
        eta: float = 1.0,
        marginalized: bool = False,
    ) -> None:
        if not isinstance(num_components, int) or num_components < 1:
            raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
        if covariance_type == "full" and dim < 2:
            covariance_type = "diag"  # one dimension: full and diagonal coincide
        for name, v in (("concentration", concentration), ("eta", eta)):
            if not v > 0:
                raise ValueError(f"{name} must be positive, got {v!r}")
        self.num_components = num_components
        self.dim = dim
        self.covariance_type = covariance_type
        self.prior_loc = torch.as_tensor(prior_loc, dtype=torch.float32).expand(dim).clone()
        self.prior_scale = torch.as_tensor(prior_scale, dtype=torch.float32).expand(dim).clone()
        self.scale0 = torch.as_tensor(scale0, dtype=torch.float32).expand(dim).clone()
        if bool((self.prior_scale <= 0).any()) or bool((self.scale0 <= 0).any()):
            raise ValueError("prior_scale and scale0 must be positive")
        self.concentration = float(concentration)
        self.eta = float(eta)
        self.marginalized = marginalized

    @classmethod
    def from_data(cls, x: torch.Tensor, num_components: int, covariance_type: str = "full", **kw):
        """Build a model whose weak priors are centred on and scaled to ``x`` (N, D)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() != 2:
            raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
        if num_components > x.shape[0]:
            raise ValueError(
                f"num_components={num_components} is larger than the number of data points N={x.shape[0]}"
            )
        spread = (x.max(0).values - x.min(0).values).clamp(min=1e-3)
        kw.setdefault("prior_loc", x.mean(0))
        kw.setdefault("prior_scale", 2.0 * spread)
        kw.setdefault("scale0", (x.std(0) / num_components ** (1.0 / x.shape[1])).clamp(min=1e-3))
        return cls(num_components, x.shape[1], covariance_type, **kw)

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` unless ``x`` is an (N, D) tensor with this model's D."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}), got {tuple(x.shape)}")

    # ---------------------------------------------------------------- the model
    def _globals(self):
        k, d = self.num_components, self.dim
        weights = pyro.sample("weights", dist.Dirichlet(torch.full((k,), self.concentration)))
        with pyro.plate("components", k, dim=-1):
            locs = pyro.sample("locs", dist.Normal(self.prior_loc, self.prior_scale).to_event(1))
            scales = pyro.sample("scales", dist.LogNormal(self.scale0.log(), 1.0).to_event(1))
            corr = None
            if self.covariance_type == "full":
                corr = pyro.sample("corr_chol", dist.LKJCholesky(d, self.eta))
        return weights, locs, scales, corr

    @staticmethod
    def _component(locs, scales, corr):
        if corr is None:
            return dist.Normal(locs, scales).to_event(1)
        return dist.MultivariateNormal(locs, scale_tril=scales[..., :, None] * corr)

    def model(self, x: torch.Tensor) -> None:
        """The joint ``p(x, z, theta)``; ``z`` ("assignment") is enumerated, or summed out in closed form."""
        weights, locs, scales, corr = self._globals()
        if self.marginalized:
            mix = dist.MixtureSameFamily(dist.Categorical(weights), self._component(locs, scales, corr))
            with data_plate(x):
                pyro.sample("obs", mix, obs=x)
            return
        with data_plate(x):
            z = pyro.sample("assignment", dist.Categorical(weights), infer={"enumerate": "parallel"})
            pyro.sample(
                "obs",
                self._component(locs[z], scales[z], None if corr is None else corr[z]),
                obs=x,
            )

    def global_model(self) -> Any:
        """The model with the assignment site hidden: what a guide on the globals sees."""
        return poutine.block(self.model, hide=["assignment"])

    # ---------------------------------------------------------------- guides
    def init_values(self, weights, locs, covariances) -> dict[str, torch.Tensor]:
        """Map plain mixture parameters to this model's global sites (for ``init_to_value``)."""
        params = MixtureParameters(weights, locs, covariances)
        std = params.covariances.diagonal(dim1=-2, dim2=-1).sqrt()
        values = {
            "weights": params.weights.float().clamp(min=1e-6) / params.weights.float().clamp(min=1e-6).sum(),
            "locs": params.locs.float(),
            "scales": std.float(),
        }
        if self.covariance_type == "full":
            corr = params.covariances / (std[:, :, None] * std[:, None, :])
            values["corr_chol"] = torch.linalg.cholesky(corr).float()
        return values

    def map_guide(self, init: dict[str, torch.Tensor] | None = None) -> AutoDelta:
        """Return an ``AutoDelta`` guide on the globals (MAP), started at ``init`` if given."""
        kw = {"init_loc_fn": init_to_value(values=init)} if init else {}
        return AutoDelta(self.global_model(), **kw)

    def variational_guide(
        self, init: dict[str, torch.Tensor] | None = None, init_scale: float = 0.05
    ) -> AutoNormal:
        """Return an ``AutoNormal`` (mean-field in unconstrained space) guide on the globals."""
        kw = {"init_loc_fn": init_to_value(values=init)} if init else {}
        return AutoNormal(self.global_model(), init_scale=init_scale, **kw)

    # ---------------------------------------------------------------- reading results
    def parameters_from(self, values: dict[str, torch.Tensor]) -> MixtureParameters:
        """Turn global-site values (one draw, unbatched) into :class:`MixtureParameters`."""
        scales = values["scales"].double()
        if self.covariance_type == "full":
            tril = scales[..., :, None] * values["corr_chol"].double()
            cov = tril @ tril.transpose(-1, -2)
        else:
            cov = torch.diag_embed(scales.square())
        return MixtureParameters(values["weights"].double(), values["locs"].double(), cov)

    @torch.no_grad()
    def assignments(self, x: torch.Tensor, guide: Any, temperature: int = 0) -> torch.Tensor:
        """Return each row's component via ``infer_discrete`` (MAP with ``temperature=0``, a draw with 1).

        The globals are taken from one run of ``guide`` (its point estimate for AutoDelta).
        """
        guide_trace = poutine.trace(guide).get_trace(x)
        conditioned = poutine.replay(config_enumerate(self.model), trace=guide_trace)
        discrete = infer_discrete(conditioned, first_available_dim=-2, temperature=temperature)
        trace = poutine.trace(discrete).get_trace(x)
        return trace.nodes["assignment"]["value"].long()

    def log_joint(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> float:
        """Return ``log p(x, theta)`` with the assignments summed out (nats, whole data set)."""
        conditioned = poutine.condition(self.model, data=values)
        if self.marginalized:
            return float(poutine.trace(conditioned).get_trace(x).log_prob_sum())
        elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
        return -float(elbo.loss(conditioned, lambda x: None, x))
