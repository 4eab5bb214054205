"""Independent component analysis as a linear latent-variable model.

Sources ``s_n`` have independent heavy-tailed marginals (Laplace or logistic, unit scale) and
are mixed linearly: ``x_n = A s_n (+ noise)``. Two Pyro models, both trained by
:func:`pyro_gen.inference.fit`:

* :class:`ICA` (noiseless, square): the exact likelihood by change of variables,
  ``log p(x) = sum_i log p_s((W x)_i) + log |det W|`` with the unmixing ``W = A^-1`` a
  parameter (Bell and Sejnowski 1995; MacKay 1996). No latent sample sites, an empty guide:
  SVI on it is maximum likelihood.
* :class:`NoisyICA`: ``s ~ p_s``, ``x | s ~ N(A s, sigma^2 I)`` with a linear amortised
  Gaussian guide ``q(s | x) = N(B x + c, diag tau^2)``, fitted by SVI on the ELBO.

Fitting and scoring them (:func:`~pyro_gen.experiments.ica.fit_ica`,
:func:`~pyro_gen.experiments.ica.amari_distance`, :func:`~pyro_gen.experiments.ica.compare_ica`
against scikit-learn's ``FastICA``) live in :mod:`pyro_gen.experiments.ica`.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .base import data_plate

SOURCE_PRIORS = ("laplace", "logistic")


def source_prior(name: str, num_sources: int) -> dist.TorchDistribution:
    """Return the unit-scale source prior (event shape ``(num_sources,)``): Laplace or logistic."""
    loc, scale = torch.zeros(num_sources), torch.ones(num_sources)
    if name == "laplace":
        return dist.Laplace(loc, scale).to_event(1)
    if name == "logistic":
        return dist.Logistic(loc, scale).to_event(1)
    raise ValueError(f"prior must be one of {SOURCE_PRIORS}, got {name!r}")


def check_prior(prior: str) -> None:
    """Raise ``ValueError`` unless ``prior`` is one of :data:`SOURCE_PRIORS`."""
    if prior not in SOURCE_PRIORS:
        raise ValueError(f"prior must be one of {SOURCE_PRIORS}, got {prior!r}")


def whitening_matrix(x: torch.Tensor) -> torch.Tensor:
    """Return the symmetric whitening matrix ``C^{-1/2}`` of the rows of ``x`` (C: their covariance)."""
    xc = x - x.mean(0)
    cov = xc.T @ xc / (x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)
    if float(evals.min()) <= 1e-10 * float(evals.max()):
        raise ValueError("data covariance is singular: the mixture has fewer sources than dimensions")
    return evecs @ torch.diag(evals.rsqrt()) @ evecs.T


class ICA(nn.Module):
    """Noiseless square ICA with exact likelihood; ``unmixing`` ``W`` is the parameter.

    ``prior`` is ``"laplace"`` or ``"logistic"``. The data mean is stored at construction
    (``mean``) and subtracted, so sources are zero-mean. ``mixing_`` is ``W^-1``.
    """

    def __init__(
        self,
        dim: int,
        prior: str = "laplace",
        init_unmixing: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
    ):
        super().__init__()
        check_prior(prior)
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.prior = int(dim), prior
        w = torch.eye(dim) if init_unmixing is None else init_unmixing.clone().float()
        if w.shape != (dim, dim):
            raise ValueError(f"init_unmixing must have shape {(dim, dim)}, got {tuple(w.shape)}")
        self.unmixing = nn.Parameter(w)
        self.register_buffer("mean", torch.zeros(dim) if mean is None else mean.clone().float())

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, dim)``."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}) for this ICA, got {tuple(x.shape)}")

    def model(self, x: torch.Tensor) -> None:
        """Observe the unmixed sources ``W (x - mean)`` under the prior, plus ``log |det W|`` per point."""
        w = self.unmixing
        with data_plate(x):
            pyro.sample("s", source_prior(self.prior, self.dim), obs=(x - self.mean) @ w.T)
            pyro.factor("log_abs_det", torch.linalg.slogdet(w).logabsdet.expand(x.shape[0]))

    def guide(self, x: torch.Tensor) -> None:
        """No latent variables: SVI with this empty guide is maximum likelihood."""

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``log p(x)`` for each row, ``(N,)`` in nats (exact change of variables)."""
        w = self.unmixing
        s = (x - self.mean) @ w.T
        return source_prior(self.prior, self.dim).log_prob(s) + torch.linalg.slogdet(w).logabsdet

    @property
    def mixing_(self) -> torch.Tensor:
        """The estimated mixing matrix ``A = W^-1``, ``(dim, dim)``."""
        return torch.linalg.inv(self.unmixing.detach())

    @torch.no_grad()
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Return the recovered sources ``(N, dim)``."""
        return (x - self.mean) @ self.unmixing.T


class NoisyICA(nn.Module):
    """ICA with Gaussian observation noise and latent sources, for SVI.

    Model ``s ~ p_s``, ``x | s ~ N(A s + mean, noise_scale^2 I)`` (``noise_scale`` fixed);
    guide ``q(s | x) = N((pinv(A) + B) (x - mean) + c, L L^T)`` with a learned lower-triangular ``L``
    (full covariance: a diagonal one biases ``A`` towards orthogonal columns, because the
    exact posterior covariance ``sigma^2 (A^T A)^-1`` is not diagonal). ``mixing_`` is ``A``.
    """

    def __init__(
        self,
        dim: int,
        num_sources: int | None = None,
        prior: str = "laplace",
        noise_scale: float = 0.2,
        init_mixing: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
    ):
        super().__init__()
        check_prior(prior)
        k = dim if num_sources is None else int(num_sources)
        if dim <= 0 or k <= 0:
            raise ValueError(f"dim and num_sources must be positive, got {dim}, {k}")
        if noise_scale <= 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale}")
        self.dim, self.num_sources, self.prior, self.noise_scale = int(dim), k, prior, float(noise_scale)
        a = torch.eye(dim, k) if init_mixing is None else init_mixing.clone().float()
        if a.shape != (dim, k):
            raise ValueError(f"init_mixing must have shape {(dim, k)}, got {tuple(a.shape)}")
        self.mixing = nn.Parameter(a)
        # The guide's mean map is pinv(A) + a learned correction: tying it to A lets a rotation
        # of A move the guide along (a free map leaves SVI stuck near the whitening start).
        self.guide_weight = nn.Parameter(torch.zeros(k, dim))
        self.guide_bias = nn.Parameter(torch.zeros(k))
        self.guide_raw_scale = nn.Parameter(torch.full((k,), float(torch.tensor(noise_scale).expm1().log())))
        self.guide_offdiag = nn.Parameter(torch.zeros(k, k))
        self.register_buffer("mean", torch.zeros(dim) if mean is None else mean.clone().float())

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, dim)``."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}) for this ICA, got {tuple(x.shape)}")

    def model(self, x: torch.Tensor) -> None:
        """``s ~ p_s``; ``x ~ N(A s + mean, noise_scale^2 I)``."""
        with data_plate(x):
            s = pyro.sample("s", source_prior(self.prior, self.num_sources))
            loc = s @ self.mixing.T + self.mean
            pyro.sample("x", dist.Normal(loc, self.noise_scale).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """Linear amortised full-covariance Gaussian ``q(s | x)``."""
        with data_plate(x):
            loc = (x - self.mean) @ (self.guide_weight + torch.linalg.pinv(self.mixing)).T + self.guide_bias
            tril = self.guide_offdiag.tril(-1) + torch.diag(
                nn.functional.softplus(self.guide_raw_scale) + 1e-5
            )
            pyro.sample("s", dist.MultivariateNormal(loc, scale_tril=tril))

    @property
    def mixing_(self) -> torch.Tensor:
        """The estimated mixing matrix ``A``, ``(dim, num_sources)``."""
        return self.mixing.detach().clone()
