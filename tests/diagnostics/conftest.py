"""Shared models for the diagnostics tests: a conjugate normal model (global mean) and a
conjugate amortized model (one latent per data point), both with closed-form posteriors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_gen.models.base import data_plate

PRIOR_SCALE = 3.0
NOISE = 1.0


def normal_model(x: torch.Tensor) -> None:
    """mu ~ N(0, 3^2), x_n ~ N(mu, 1) for the rows of x (N, 1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SCALE))
    with data_plate(x):
        pyro.sample("x", dist.Normal(mu, NOISE), obs=x[:, 0])


def exact_posterior(x: torch.Tensor) -> tuple[float, float]:
    """Closed-form posterior (mean, std) of mu given x."""
    var = 1.0 / (1.0 / PRIOR_SCALE**2 + x.shape[0] / NOISE**2)
    return float(var * x.sum() / NOISE**2), math.sqrt(var)


def exact_log_marginal(x: torch.Tensor) -> float:
    """log p(x) in nats for the whole data set (multivariate normal marginal)."""
    n = x.shape[0]
    cov = PRIOR_SCALE**2 * torch.ones(n, n, dtype=torch.float64) + NOISE**2 * torch.eye(
        n, dtype=torch.float64
    )
    return float(dist.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov).log_prob(x[:, 0].double()))


def fixed_guide(loc: float, scale: float):
    """A guide q(mu) = N(loc, scale^2) with no parameters."""

    def guide(x: torch.Tensor) -> None:
        pyro.sample("mu", dist.Normal(loc, scale))

    return guide


class NormalGuide(nn.Module):
    """A trainable q(mu) = N(loc, exp(log_scale)^2) that owns its parameters (one per SVI run)."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor(0.0))
        self.log_scale = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> None:
        pyro.sample("mu", dist.Normal(self.loc, self.log_scale.exp()))


# Amortized conjugate model: z_n ~ N(0, I_L), x_n ~ N(z_n, s^2 I_L). Exact posterior per point:
# N(x_n / (1 + s^2), s^2 / (1 + s^2)).
LOCAL_NOISE = 0.5


def local_model(x: torch.Tensor) -> None:
    """z_n ~ N(0, I), x_n ~ N(z_n, 0.5^2 I) with x (N, L)."""
    with data_plate(x):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, LOCAL_NOISE).to_event(1), obs=x)


def local_posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior (loc, scale) of every z_n, each (N, L)."""
    s2 = LOCAL_NOISE**2
    return x / (1 + s2), torch.full_like(x, math.sqrt(s2 / (1 + s2)))


def local_encoder(shift: float = 0.0, scale_factor: float = 1.0):
    """An amortized guide: the exact posterior, its mean shifted and its scale multiplied."""

    def guide(x: torch.Tensor) -> None:
        loc, scale = local_posterior(x)
        with data_plate(x):
            pyro.sample("z", dist.Normal(loc + shift, scale * scale_factor).to_event(1))

    return guide


@pytest.fixture
def normal_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(25, 1, generator=g) + 2.0).float()


@pytest.fixture
def local_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randn(30, 3, generator=g) * math.sqrt(1 + LOCAL_NOISE**2)


@pytest.fixture
def conj():
    """The helpers above as one namespace (tests import nothing from conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        normal_model=normal_model,
        exact_posterior=exact_posterior,
        exact_log_marginal=exact_log_marginal,
        fixed_guide=fixed_guide,
        NormalGuide=NormalGuide,
        local_model=local_model,
        local_posterior=local_posterior,
        local_encoder=local_encoder,
        noise=NOISE,
        local_noise=LOCAL_NOISE,
    )
