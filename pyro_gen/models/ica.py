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

:func:`amari_distance` scores a recovered mixing matrix up to the permutation and scale that
ICA cannot identify; :func:`compare_ica` runs both fits and scikit-learn's ``FastICA`` on the
same synthetic mixture.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
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


def _check_prior(prior: str) -> None:
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
        _check_prior(prior)
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
        _check_prior(prior)
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


def amari_distance(estimated_mixing: Any, true_mixing: Any) -> float:
    """Return the normalised Amari distance in [0, 1] between two square mixing matrices.

    With ``P = estimated^-1 @ true``: ``d = 1 / (2 n (n - 1)) * [sum_i (sum_j |P_ij| / max_j
    |P_ij| - 1) + sum_j (sum_i |P_ij| / max_i |P_ij| - 1)]`` (Amari et al. 1996). It is 0
    exactly when ``P`` is a scaled permutation, i.e. the mixing is recovered up to the
    permutation and scale ICA cannot identify. (Hand-written: scikit-learn has none.)
    """
    est = np.asarray(torch.as_tensor(estimated_mixing, dtype=torch.float64))
    true = np.asarray(torch.as_tensor(true_mixing, dtype=torch.float64))
    if est.ndim != 2 or est.shape[0] != est.shape[1] or est.shape != true.shape:
        raise ValueError(f"need two square matrices of the same shape, got {est.shape} and {true.shape}")
    n = est.shape[0]
    if n < 2:
        return 0.0
    p = np.abs(np.linalg.solve(est, true))
    rows = (p.sum(1) / p.max(1) - 1).sum()
    cols = (p.sum(0) / p.max(0) - 1).sum()
    return float((rows + cols) / (2 * n * (n - 1)))


def mixed_sources(
    num_samples: int = 2000,
    num_sources: int = 3,
    prior: str = "laplace",
    seed: int = 0,
    max_condition: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(x, s, A)``: unit-scale ``prior`` sources ``(N, k)``, mixing ``(k, k)``, ``x = s A^T``.

    ``A`` has standard normal entries, redrawn until its condition number is below
    ``max_condition``.
    """
    _check_prior(prior)
    if num_samples < 2 or num_sources < 1:
        raise ValueError(f"need num_samples >= 2 and num_sources >= 1, got {num_samples}, {num_sources}")
    g = torch.Generator().manual_seed(seed)
    if prior == "laplace":
        u = torch.rand(num_samples, num_sources, generator=g) - 0.5
        s = -u.sign() * torch.log1p(-2 * u.abs())
    else:
        u = torch.rand(num_samples, num_sources, generator=g).clamp(1e-7, 1 - 1e-7)
        s = torch.log(u) - torch.log1p(-u)
    while True:
        a = torch.randn(num_sources, num_sources, generator=g)
        if float(torch.linalg.cond(a)) < max_condition:
            break
    return s @ a.T, s, a


def fit_ica(
    x: torch.Tensor,
    *,
    method: str = "ml",
    prior: str = "laplace",
    steps: int = 1500,
    lr: float = 0.02,
    batch_size: int | None = None,
    noise_scale: float = 0.2,
    seed: int = 0,
    progress: bool = False,
):
    """Fit ICA to ``x`` ``(N, k)`` by ``method="ml"`` (exact likelihood) or ``"svi"`` (NoisyICA ELBO).

    Both start from the symmetric whitening matrix of ``x`` and train with
    :func:`pyro_gen.inference.fit` (Adam, ``steps`` steps, full batch unless ``batch_size``).
    Returns the :class:`~pyro_gen.inference.FitResult`; ``result.model.mixing_`` is the
    estimated mixing matrix and ``result.final_train_elbo`` the log-likelihood (ML) or ELBO
    (SVI) in nats per data point.
    """
    from ..inference import fit

    if method not in ("ml", "svi"):
        raise ValueError(f"method must be 'ml' or 'svi', got {method!r}")
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, k), got {tuple(x.shape)}")
    pyro.set_rng_seed(seed)
    w0 = whitening_matrix(x)
    mean = x.mean(0)
    if method == "ml":
        model = ICA(x.shape[1], prior=prior, init_unmixing=w0, mean=mean)
    else:
        model = NoisyICA(
            x.shape[1], prior=prior, noise_scale=noise_scale, init_mixing=torch.linalg.inv(w0), mean=mean
        )
    return fit(
        model,
        x,
        steps=steps,
        lr=lr,
        batch_size=batch_size or x.shape[0],
        seed=seed,
        progress=progress,
        log_every=max(1, steps // 20),
    )


def compare_ica(
    num_samples: int = 2000,
    num_sources: int = 3,
    prior: str = "laplace",
    seed: int = 0,
    steps: int = 1500,
    svi_steps: int = 3000,
) -> dict[str, dict[str, float]]:
    """Fit ML ICA, SVI (noisy) ICA and ``sklearn.decomposition.FastICA`` on one synthetic mixture.

    Returns ``{method: {"amari": distance in [0, 1], "seconds": wall time}}``.
    """
    from sklearn.decomposition import FastICA

    x, _, a = mixed_sources(num_samples, num_sources, prior, seed)
    out: dict[str, dict[str, float]] = {}
    for method, n in (("ml", steps), ("svi", svi_steps)):
        t0 = time.perf_counter()
        res = fit_ica(x, method=method, prior=prior, steps=n, seed=seed)
        out[method] = {"amari": amari_distance(res.model.mixing_, a), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    fast = FastICA(n_components=num_sources, whiten="unit-variance", random_state=seed, max_iter=1000)
    fast.fit(x.numpy())
    out["fastica"] = {"amari": amari_distance(fast.mixing_, a), "seconds": time.perf_counter() - t0}
    return out
