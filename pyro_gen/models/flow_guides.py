"""VAE with a normalizing-flow guide: q(z | x) is a Gaussian pushed through conditional flow steps.

    z_0 ~ N(mu(x), diag sigma(x)^2),   z = T_K(... T_1(z_0; h(x)) ...; h(x))
    log q(z | x) = log N(z_0) - sum_k log |det d T_k / d z_{k-1}|

``h(x)`` is the encoder's last hidden layer, so the steps are amortized like the Gaussian
(Rezende and Mohamed 2015 for planar/radial steps; Kingma et al. 2016 for the inverse
autoregressive flow, IAF). Pyro's conditional transforms compute every step and its
log-determinant in the sampling direction in one pass, so the ELBO costs about
``num_flows`` extra small networks. The model p(x, z) is the plain VAE's, so a flow guide
and a mean-field guide are compared on equal terms: same decoder, same budget
(:func:`pyro_gen.experiments.flow_guides.compare_guides`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

from .base import data_plate
from .vae import VAE

GUIDE_FLOWS = ("iaf", "planar", "radial")


class FlowGuideVAE(VAE):
    """A :class:`~pyro_gen.models.vae.VAE` whose amortized guide is a conditional normalizing flow.

    ``flow`` is ``"iaf"`` (Pyro's ``ConditionalAffineAutoregressive`` in its sampling
    direction, the gated "stable" update of Kingma et al. 2016, a reversal between steps),
    ``"planar"`` or ``"radial"`` (``ConditionalPlanar`` / ``ConditionalRadial``, whose
    parameters a hypernetwork computes from the encoder features). ``num_flows`` steps;
    ``flow_hidden`` are the conditioner widths. Other arguments are the VAE's.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        hidden: Sequence[int] = (256,),
        *,
        flow: str = "iaf",
        num_flows: int = 4,
        flow_hidden: Sequence[int] | None = None,
        **vae_kwargs: Any,
    ):
        super().__init__(input_dim, latent_dim, hidden, **vae_kwargs)
        if flow not in GUIDE_FLOWS:
            raise ValueError(f"flow must be one of {GUIDE_FLOWS}, got {flow!r}")
        if not isinstance(num_flows, int) or num_flows < 1:
            raise ValueError(f"num_flows must be a positive integer, got {num_flows!r}")
        self.flow = flow
        self.num_flows = num_flows
        context_dim = int(list(hidden)[-1]) if len(list(hidden)) else input_dim
        widths = [int(h) for h in (flow_hidden or [4 * latent_dim, 4 * latent_dim])]
        self.config.update(flow=flow, num_flows=num_flows, flow_hidden=widths)
        self.flows = nn.ModuleList()
        for _ in range(num_flows):
            if flow == "iaf":
                t = T.conditional_affine_autoregressive(
                    latent_dim, context_dim, hidden_dims=widths, stable=True
                )
            elif flow == "planar":
                t = T.conditional_planar(latent_dim, context_dim, hidden_dims=widths)
            else:
                t = T.conditional_radial(latent_dim, context_dim, hidden_dims=widths)
            self.flows.append(t)
        self._reverse = T.Permute(torch.arange(latent_dim - 1, -1, -1)) if flow == "iaf" else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the encoder's last hidden layer for ``x`` (the flow steps' context)."""
        return self.encoder.net[:-1](x)

    def posterior(self, x: torch.Tensor) -> dist.TransformedDistribution:
        """Return q(z | x) for each row of ``x``: batch shape ``(N,)``, event shape ``(latent_dim,)``."""
        h = self.features(x)
        loc, raw = self.encoder.net[-1](h).split(self.latent_dim, dim=-1)
        scale = nn.functional.softplus(raw) + 1e-5
        steps: list = []
        for i, t in enumerate(self.flows):
            steps.append(t.condition(h))
            if self._reverse is not None and i < len(self.flows) - 1:
                steps.append(self._reverse)
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), steps)

    def guide(self, x: torch.Tensor) -> None:
        """Amortized flow guide q(z | x): one encoder pass, then ``num_flows`` conditional steps."""
        with data_plate(x):
            pyro.sample("z", self.posterior(x))

    @torch.no_grad()
    def sample_posterior(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Return ``(num_samples, N, latent_dim)`` draws from q(z | x)."""
        return self.posterior(x).sample((num_samples,))
