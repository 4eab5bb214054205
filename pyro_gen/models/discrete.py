"""A VAE with binary latents (a one-layer sigmoid belief net with an amortized guide).

Model:  z_nl ~ Bernoulli(pi_l), l = 1..L;  x_n ~ Bernoulli(decoder(z_n))  (per pixel)
Guide:  q(z_n | x_n) = prod_l Bernoulli(sigmoid(encoder(x_n))_l)

One sample site per latent bit (``z_0 ... z_{L-1}``) so that Pyro can enumerate them.
With a small ``L`` the same pair is trained four ways, all through ``fit``:

- exact enumeration of the guide (``guide_enumerated`` with ``TraceEnum_ELBO``: the ELBO
  and its gradient are sums over all ``2^L`` codes, no Monte Carlo noise);
- the score function with baselines (``guide`` with ``score``, ``score-baseline``,
  ``score-nn``, ``score-loo:K``; Bernoulli sites are not reparameterizable);
- multi-sample score-function estimators on ``guide``: ``vimco:K`` (the IWAE bound with
  leave-one-out signals, Mnih and Rezende 2016) and ``rws:K`` (reweighted wake-sleep,
  Bornschein and Bengio 2015), from :mod:`pyro_gen.inference.bounds`;
- a continuous relaxation (``guide_relaxed``: straight-through Gumbel / binary Concrete
  samples, Jang et al. 2017, Maddison et al. 2017, with ``analytic-kl``: the KL between the
  Bernoulli posterior and prior is exact, the reconstruction gradient is the biased
  straight-through estimate).

:meth:`exact_elbo` and :meth:`exact_log_likelihood` sum over all ``2^L`` codes, so the methods
can be compared on the true objective and on the exact log p(x) (nats per data point);
:meth:`exact_iwae_bound` is the expected ``k``-sample bound, summed over all ``k``-tuples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence, register_kl

from ..data.checks import check_unit_interval
from .base import data_plate
from .nets import mlp, set_output_bias

MAX_EXACT_LATENTS = 16
MAX_EXACT_TUPLES = 2**16


@register_kl(dist.RelaxedBernoulliStraightThrough, dist.Bernoulli)
def _kl_relaxed_st_bernoulli(q, p):
    # The straight-through sample is a hard {0, 1} draw whose probability of being 1 is
    # q.probs, so the KL of the discrete variables is the Bernoulli one (exact, no relaxation).
    return kl_divergence(dist.Bernoulli(probs=q.probs), p)


class DiscreteVAE(nn.Module):
    """Binary-latent VAE over flattened data in [0, 1] ``(N, input_dim)``.

    ``num_latents`` Bernoulli latents with prior probability ``prior_prob``;
    ``hidden`` are the encoder widths (the decoder mirrors them); ``temperature`` is the
    relaxation temperature of :meth:`guide_relaxed`.
    """

    def __init__(
        self,
        input_dim: int,
        num_latents: int = 8,
        hidden: Sequence[int] = (128,),
        temperature: float = 0.5,
        prior_prob: float = 0.5,
        activation: str = "relu",
    ):
        super().__init__()
        if input_dim <= 0 or num_latents <= 0:
            raise ValueError(f"input_dim and num_latents must be positive, got {input_dim}, {num_latents}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        self.input_dim = int(input_dim)
        self.num_latents = int(num_latents)
        self.temperature = float(temperature)
        self.encoder = mlp(input_dim, list(hidden), num_latents, activation)
        self.decoder = mlp(num_latents, list(reversed(list(hidden))), input_dim, activation)
        self.register_buffer("prior_probs", torch.full((num_latents,), float(prior_prob)))

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, input_dim)`` with values in [0, 1]."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(f"{name} must have shape (N, {self.input_dim}), got {tuple(x.shape)}")
        check_unit_interval(x, name)

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Set the decoder's output bias to the logit of the data mean."""
        set_output_bias(self.decoder[-1].bias, data_mean, link="logit")

    def likelihood_dist(self, z: torch.Tensor) -> dist.TorchDistribution:
        """Return p(x | z) (event shape ``(input_dim,)``) for codes ``z`` of shape ``(..., L)``."""
        return dist.Bernoulli(logits=self.decoder(z), validate_args=False).to_event(1)

    # ------------------------------------------------------------------ Pyro pair
    def model(self, x: torch.Tensor) -> None:
        """Generative model p(x, z); broadcasts over enumerated and particle dimensions."""
        with data_plate(x):
            bits = [
                pyro.sample(f"z_{i}", dist.Bernoulli(self.prior_probs[i])) for i in range(self.num_latents)
            ]
            z = torch.stack(torch.broadcast_tensors(*bits), dim=-1)
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def _guide(self, x: torch.Tensor, relaxed: bool, enumerate_: bool) -> None:
        logits = self.encoder(x)
        with data_plate(x):
            for i in range(self.num_latents):
                if relaxed:
                    d = dist.RelaxedBernoulliStraightThrough(
                        torch.tensor(self.temperature), logits=logits[..., i]
                    )
                else:
                    d = dist.Bernoulli(logits=logits[..., i])
                infer = {"enumerate": "parallel"} if enumerate_ else {}
                pyro.sample(f"z_{i}", d, infer=infer)

    def guide(self, x: torch.Tensor) -> None:
        """Factorized Bernoulli guide q(z | x) (score-function estimators)."""
        self._guide(x, relaxed=False, enumerate_=False)

    def guide_enumerated(self, x: torch.Tensor) -> None:
        """The same guide with every bit marked for parallel enumeration (``TraceEnum_ELBO``)."""
        self._guide(x, relaxed=False, enumerate_=True)

    def guide_relaxed(self, x: torch.Tensor) -> None:
        """The same posterior sampled with straight-through binary Concrete draws (``analytic-kl``)."""
        self._guide(x, relaxed=True, enumerate_=False)

    # ------------------------------------------------------------------ exact quantities
    def all_codes(self) -> torch.Tensor:
        """Return the ``(2^L, L)`` tensor of every binary code."""
        if self.num_latents > MAX_EXACT_LATENTS:
            raise ValueError(
                f"exact sums need num_latents <= {MAX_EXACT_LATENTS}, got {self.num_latents} (2^L codes)"
            )
        return torch.tensor(list(itertools.product([0.0, 1.0], repeat=self.num_latents)))

    def code_log_densities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(log p(x, c), log q(c | x))`` for every code ``c``: two ``(2^L, N)`` tensors (nats).

        Differentiable in the model's and the guide's parameters, so exact gradients of any
        objective built from them (enumerated bounds, expected estimators) follow by autograd.
        """
        codes = self.all_codes().to(x.device)  # (C, L)
        log_prior = dist.Bernoulli(self.prior_probs).log_prob(codes).sum(-1)  # (C,)
        log_lik = self.likelihood_dist(codes.unsqueeze(1)).log_prob(x)  # (C, N)
        logits = self.encoder(x)  # (N, L)
        log_q = dist.Bernoulli(logits=logits.unsqueeze(0)).log_prob(codes.unsqueeze(1)).sum(-1)  # (C, N)
        return log_lik + log_prior.unsqueeze(1), log_q

    @torch.no_grad()
    def _joint_and_q(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.code_log_densities(x)

    def exact_iwae_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Return ``E_q[log (1/k) sum_i w_i]`` per row of ``x`` (nats), summed over every k-tuple of codes.

        The expected importance-weighted bound of ``k`` samples (the ELBO at ``k = 1``), exact
        and differentiable: the objective whose gradient VIMCO and IWAE estimate, and whose
        model gradient the wake-theta phase of reweighted wake-sleep estimates. Costs
        ``2^(L k)`` terms per row; refused above :data:`MAX_EXACT_TUPLES`.
        """
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        num_codes = 2**self.num_latents
        if num_codes ** int(k) > MAX_EXACT_TUPLES:
            raise ValueError(
                f"the exact {k}-sample bound sums over 2^(L k) = {num_codes}^{k} tuples; "
                f"at most {MAX_EXACT_TUPLES} are allowed"
            )
        log_joint, log_q = self.code_log_densities(x)  # (C, N)
        tuples = torch.cartesian_prod(*[torch.arange(num_codes)] * int(k)).reshape(-1, int(k))  # (T, k)
        log_w = (log_joint - log_q)[tuples]  # (T, k, N)
        log_prob = log_q[tuples].sum(1)  # (T, N)
        bound = torch.logsumexp(log_w, dim=1) - math.log(k)  # (T, N)
        return (log_prob.exp() * bound).sum(0)

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact ELBO of each row of ``x`` (nats), summing over all ``2^L`` codes."""
        log_joint, log_q = self._joint_and_q(x)
        return (log_q.exp() * (log_joint - log_q)).sum(0)

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log p(x) of each row of ``x`` (nats): logsumexp over all codes."""
        log_joint, _ = self._joint_and_q(x)
        return torch.logsumexp(log_joint, dim=0)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Return ``(num_samples, input_dim)`` pixel probabilities decoded from prior codes."""
        z = dist.Bernoulli(self.prior_probs).sample((num_samples,))
        return torch.sigmoid(self.decoder(z))
