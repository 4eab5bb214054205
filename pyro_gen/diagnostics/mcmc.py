"""MCMC diagnostics and model comparison surfaced from ArviZ, with plain-language verdicts.

Thresholds follow Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021): rank-normalized
split R-hat below 1.01, bulk and tail ESS above 100 per chain; any divergent transition
means the sampler could not explore part of the posterior. PSIS-LOO (Vehtari, Gelman and
Gabry 2017) is trusted for a data point when its Pareto k is at most
min(1 - 1/log10(S), 0.7) for S posterior draws (:func:`pareto_k_threshold`).
"""

from __future__ import annotations

import warnings
from typing import Any

import arviz as az
import numpy as np

RHAT_MAX = 1.01
ESS_PER_CHAIN = 100


def rhat_verdict(rhat: float) -> str:
    """Return a plain-language reading of the worst R-hat."""
    if not np.isfinite(rhat):
        return "undefined (a single chain or constant draws)"
    if rhat < RHAT_MAX:
        return "chains agree (R-hat < 1.01)"
    if rhat < 1.1:
        return "chains have not quite mixed (1.01 <= R-hat < 1.1): run longer"
    return "chains disagree (R-hat >= 1.1): the draws do not represent one posterior"


def ess_verdict(ess: float, num_chains: int) -> str:
    """Return a plain-language reading of the smallest effective sample size."""
    need = ESS_PER_CHAIN * num_chains
    if not np.isfinite(ess):
        return "undefined"
    if ess >= need:
        return f"enough effective draws (>= {need})"
    return f"too few effective draws (< {need}): estimates of means and quantiles are noisy"


def mcmc_diagnostics(idata: Any, var_names: list[str] | None = None) -> dict[str, Any]:
    """Return R-hat, bulk/tail ESS and divergences of a posterior, with verdicts.

    The dict has ``table`` (``az.summary(kind="diagnostics")``: one row per scalar, columns
    ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``), ``max_rhat``,
    ``min_ess_bulk``, ``min_ess_tail``, ``divergences`` (count, or ``None`` when the run did
    not record them), ``num_chains``, ``num_draws`` and ``verdicts`` (a dict of sentences).
    """
    if "posterior" not in idata.groups():
        raise ValueError("idata has no posterior group")
    table = az.summary(idata, var_names=var_names, kind="diagnostics")
    post = idata.posterior
    num_chains, num_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    divergences = None
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        divergences = int(idata.sample_stats["diverging"].values.sum())
    max_rhat = float(table["r_hat"].max()) if num_chains > 1 else float("nan")
    out = {
        "table": table,
        "max_rhat": max_rhat,
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "min_ess_tail": float(table["ess_tail"].min()),
        "divergences": divergences,
        "num_chains": num_chains,
        "num_draws": num_draws,
    }
    verdicts = {
        "r_hat": rhat_verdict(max_rhat),
        "ess_bulk": ess_verdict(out["min_ess_bulk"], num_chains),
        "ess_tail": ess_verdict(out["min_ess_tail"], num_chains),
    }
    if divergences is not None:
        verdicts["divergences"] = (
            "none"
            if divergences == 0
            else f"{divergences} divergent transitions: reparameterize or raise target_accept"
        )
    out["verdicts"] = verdicts
    return out


def pareto_k_threshold(num_draws: int) -> float:
    """Return the largest Pareto k for which PSIS is trusted with ``num_draws`` draws in all.

    ``min(1 - 1 / log10(S), 0.7)`` (Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto
    smoothed importance sampling", and ArviZ's ``good_k``): 0.7 from S = 2,154 draws on, lower
    for fewer draws (0.5 at S = 100).
    """
    if num_draws < 2:
        raise ValueError(f"PSIS needs at least 2 draws, got {num_draws}")
    return float(min(1.0 - 1.0 / np.log10(num_draws), 0.7))


def loo(idata: Any, var_name: str | None = None) -> dict[str, Any]:
    """Return PSIS-LOO of ``idata`` (it needs the pointwise ``log_likelihood`` group).

    Pareto smoothed importance sampling leave-one-out cross-validation (Vehtari, Gelman and
    Gabry 2017) through ``az.loo``. A data point's estimate is trusted when its Pareto k is at
    most ``good_k = min(1 - 1/log10(S), 0.7)`` for S posterior draws in all
    (:func:`pareto_k_threshold`); ``num_bad_k`` counts the points above it.

    The dict has ``elpd_loo`` and ``se`` (nats, summed over data points), ``elpd_loo_per_point``
    (nats per point), ``p_loo`` (effective number of parameters), ``looic`` (``-2 elpd_loo``),
    ``pareto_k`` (``(N,)`` array), ``max_pareto_k``, ``good_k``, ``num_bad_k``, ``verdict``
    (words) and ``elpd_data`` (the ``ELPDData`` object ArviZ returned).
    """
    if "log_likelihood" not in idata.groups():
        raise ValueError("idata has no log_likelihood group: convert with log_likelihood=True (and data)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about high Pareto k; counted below instead
        res = az.loo(idata, pointwise=True, var_name=var_name)
    k = np.asarray(res.pareto_k)
    post = idata.posterior
    good = pareto_k_threshold(int(post.sizes["chain"]) * int(post.sizes["draw"]))
    bad = int((k > good).sum())
    verdict = (
        "PSIS-LOO is reliable for every data point"
        if bad == 0
        else f"{bad} data points have Pareto k > {good:.2f}: LOO is unreliable for them (refit or use k-fold)"
    )
    elpd = float(res.elpd_loo)
    return {
        "elpd_loo": elpd,
        "elpd_loo_per_point": elpd / max(1, k.size),
        "se": float(res.se),
        "p_loo": float(res.p_loo),
        "looic": -2.0 * elpd,
        "pareto_k": k,
        "max_pareto_k": float(k.max()),
        "good_k": good,
        "num_bad_k": bad,
        "verdict": verdict,
        "elpd_data": res,
    }


def compare(models: dict[str, Any], ic: str = "loo", **kwargs: Any) -> Any:
    """Return ``az.compare`` of named InferenceData objects (a DataFrame ranked by elpd, nats)."""
    if len(models) < 2:
        raise ValueError(f"compare needs at least two models, got {len(models)}")
    missing = [n for n, d in models.items() if "log_likelihood" not in d.groups()]
    if missing:
        raise ValueError(f"models {missing} have no log_likelihood group")
    with warnings.catch_warnings():
        # ArviZ 0.23 calls DataFrame.sort_values(inplace=True), deprecated by pandas 3.1
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        return az.compare(models, ic=ic, **kwargs)
