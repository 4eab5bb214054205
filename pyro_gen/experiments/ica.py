"""ICA experiments: synthetic mixtures, fits by maximum likelihood and SVI, and the Amari distance.

:func:`fit_ica` trains :class:`~pyro_gen.models.ica.ICA` (exact likelihood) or
:class:`~pyro_gen.models.ica.NoisyICA` (ELBO) with :func:`pyro_gen.inference.fit`;
:func:`amari_distance` scores a recovered mixing matrix up to the permutation and scale that
ICA cannot identify; :func:`compare_ica` runs both fits and scikit-learn's ``FastICA`` on the
same synthetic mixture.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyro
import torch

from ..inference import fit
from ..models.ica import ICA, NoisyICA, check_prior, whitening_matrix
from .costs import fit_costs


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
    check_prior(prior)
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
) -> dict[str, dict[str, Any]]:
    """Fit ML ICA, SVI (noisy) ICA and ``sklearn.decomposition.FastICA`` on one synthetic mixture.

    Returns ``{method: {"amari": distance in [0, 1], "seconds": training wall seconds}}``; the
    two gradient fits add ``costs`` (:func:`~pyro_gen.experiments.costs.fit_costs` of their
    :class:`~pyro_gen.inference.FitResult`); FastICA's seconds are measured around its ``fit``.
    """
    from sklearn.decomposition import FastICA

    x, _, a = mixed_sources(num_samples, num_sources, prior, seed)
    out: dict[str, dict[str, Any]] = {}
    for method, n in (("ml", steps), ("svi", svi_steps)):
        res = fit_ica(x, method=method, prior=prior, steps=n, seed=seed)
        out[method] = {
            "amari": amari_distance(res.model.mixing_, a),
            "seconds": res.seconds,
            "costs": fit_costs(res),
        }
    t0 = time.perf_counter()
    fast = FastICA(n_components=num_sources, whiten="unit-variance", random_state=seed, max_iter=1000)
    fast.fit(x.numpy())
    out["fastica"] = {"amari": amari_distance(fast.mixing_, a), "seconds": time.perf_counter() - t0}
    return out
