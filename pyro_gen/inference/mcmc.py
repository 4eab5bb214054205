"""NUTS on a Gaussian mixture with the assignments summed out, returned as a ``FitResult``.

``fit_nuts`` runs ``pyro.infer.MCMC`` with the ``NUTS`` kernel, one chain after another (the
shared CPU gains nothing from worker processes), on :class:`~pyro_gen.models.gmm.GaussianMixtureModel`.
The discrete assignments never appear as sampled sites: by default the model is run in its
``marginalized`` form (``MixtureSameFamily``, the exact sum over ``z``); with
``enumerate=True`` NUTS runs the enumerated model itself and Pyro sums ``z`` out by
enumeration (same density, slower).

A mixture's posterior is symmetric under relabelling the components, so raw draws (and
chains) can disagree on which label is which. :func:`align_components` relabels every draw
to a reference with the Hungarian algorithm (:func:`hungarian_permutation`, the one wrapper of
``scipy.optimize.linear_sum_assignment``) and re-estimates the reference from the aligned draws
(Stephens 2000 style), which handles switches within and across chains. R-hat and ESS come
from ArviZ; ``pyro_gen.diagnostics.to_inference_data`` converts the result (and ``loo`` there
gives PSIS-LOO).
"""

from __future__ import annotations

import time
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide import init_to_median, init_to_value
from scipy.optimize import linear_sum_assignment

from ..data.checks import as_data_tensor
from ..models.gmm import GaussianMixtureModel, MixtureParameters
from .engine import torch_threads
from .result import FitResult

RHAT_LIMIT = 1.01  # Vehtari et al. 2021
ESS_PER_CHAIN = 100  # bulk ESS below 100 per chain is too few for reliable R-hat and intervals


class ConvergenceWarning(UserWarning):
    """NUTS chains that have not converged (R-hat, effective sample size, divergences)."""


def convergence_warnings(max_rhat: float, min_ess: float, divergences: int, num_chains: int) -> list[str]:
    """Return one line per failed convergence check of a NUTS fit (empty when all pass).

    Checks (Vehtari et al. 2021): the largest rank-normalized R-hat above 1.01, the smallest
    bulk effective sample size below 100 per chain, any divergent transition.
    """
    out = []
    if np.isfinite(max_rhat) and max_rhat > RHAT_LIMIT:
        out.append(f"R-hat {max_rhat:.3f} > {RHAT_LIMIT}: the chains disagree (run longer or warm up longer)")
    if np.isfinite(min_ess) and min_ess < ESS_PER_CHAIN * num_chains:
        out.append(f"bulk ESS {min_ess:.0f} < {ESS_PER_CHAIN} per chain: too few effective draws")
    if divergences > 0:
        out.append(f"{divergences} divergent transitions: the sampler missed part of the posterior")
    return out


COMPONENT_SITES = ("weights", "locs", "scales", "corr_chol")


def hungarian_permutation(cost: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Return the ``(K,)`` long permutation ``perm`` minimizing ``sum_k cost[perm[k], k]``.

    ``cost[i, j]`` is the price of matching item ``i`` to reference slot ``j`` (a ``(K, K)``
    array); ``perm[j]`` is the item matched to slot ``j`` (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``).
    """
    cost = np.asarray(cost.detach().cpu() if torch.is_tensor(cost) else cost, dtype=float)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square (K, K) matrix, got shape {cost.shape}")
    rows, cols = linear_sum_assignment(cost)
    perm = torch.empty(len(rows), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return perm


def match_components(params: MixtureParameters, reference: MixtureParameters) -> torch.Tensor:
    """Return ``perm`` so that ``params.permute(perm)`` lines up with ``reference`` component by component.

    Hungarian matching (:func:`hungarian_permutation`) on squared distances between component
    locations, in units of the reference's pooled standard deviation.
    """
    if params.locs.shape != reference.locs.shape:
        raise ValueError(
            f"cannot match {tuple(params.locs.shape)} components to {tuple(reference.locs.shape)}"
        )
    scale = reference.covariances.diagonal(dim1=-2, dim2=-1).mean(0).sqrt().clamp(min=1e-12)
    cost = ((params.locs[:, None, :] - reference.locs[None, :, :]) / scale).square().sum(-1)
    return hungarian_permutation(cost)


def align_components(
    draws: dict[str, torch.Tensor],
    reference_locs: torch.Tensor | None = None,
    num_rounds: int = 3,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Relabel mixture draws so component k means the same thing in every draw and chain.

    ``draws`` maps site names to tensors shaped ``(chains, draws, K, ...)`` (``weights``,
    ``locs``, ``scales``, ``corr_chol``; others are passed through). Each draw's components are
    matched to ``reference_locs`` (K, D) (default: the first draw of the first chain) by the
    Hungarian algorithm on squared distances between locations scaled by the pooled spread;
    the reference is then replaced by the mean of the aligned draws and the matching redone
    ``num_rounds`` times. Returns ``(aligned draws, permutations (chains, draws, K))`` where
    aligned component ``k`` of a draw is its original component ``perm[..., k]``.
    """
    locs = draws["locs"].double()
    if locs.dim() != 4:
        raise ValueError(f"draws['locs'] must have shape (chains, draws, K, D), got {tuple(locs.shape)}")
    c, s, k, d = locs.shape
    flat = locs.reshape(c * s, k, d)
    ref = flat[0] if reference_locs is None else torch.as_tensor(reference_locs, dtype=torch.float64)
    if ref.shape != (k, d):
        raise ValueError(f"reference_locs must have shape ({k}, {d}), got {tuple(ref.shape)}")
    spread = flat.reshape(-1, d).std(0).clamp(min=1e-12)
    perms = torch.arange(k).expand(c * s, k).clone()
    for _ in range(max(1, num_rounds)):
        cost = (((flat[:, :, None, :] - ref[None, None, :, :]) / spread).square().sum(-1)).numpy()
        for i in range(c * s):
            perms[i] = hungarian_permutation(cost[i])  # aligned comp j <- original comp perms[i, j]
        aligned_locs = torch.gather(flat, 1, perms[:, :, None].expand(-1, -1, d))
        new_ref = aligned_locs.mean(0)
        if torch.allclose(new_ref, ref):
            break
        ref = new_ref
    aligned = {}
    for name, value in draws.items():
        if name not in COMPONENT_SITES:
            aligned[name] = value
            continue
        v = value.reshape(c * s, k, *value.shape[3:])
        idx = perms.reshape(c * s, k, *([1] * (v.dim() - 2))).expand_as(v)
        aligned[name] = torch.gather(v, 1, idx).reshape(value.shape)
    return aligned, perms.reshape(c, s, k)


def draw_parameters(gmm: GaussianMixtureModel, draws: dict[str, torch.Tensor]) -> MixtureParameters:
    """Return ``(weights (S, K), locs (S, K, D), covariances (S, K, D, D))`` of flat draws (float64)."""
    scales = draws["scales"].double()
    if gmm.covariance_type == "full":
        tril = scales[..., :, None] * draws["corr_chol"].double()
        cov = tril @ tril.transpose(-1, -2)
    else:
        cov = torch.diag_embed(scales.square())
    return draws["weights"].double(), draws["locs"].double(), cov


def pointwise_log_likelihood(
    gmm: GaussianMixtureModel, draws: dict[str, torch.Tensor], x: torch.Tensor, batch: int = 256
) -> torch.Tensor:
    """Return ``log p(x_n | theta_s)`` for every draw: shape ``(chains, draws, N)``, nats."""
    c, s = draws["weights"].shape[:2]
    flat = {name: v.reshape(c * s, *v.shape[2:]) for name, v in draws.items() if name in COMPONENT_SITES}
    x = torch.as_tensor(x, dtype=torch.float64)
    out = []
    for start in range(0, c * s, batch):
        part = {name: v[start : start + batch] for name, v in flat.items()}
        w, locs, cov = draw_parameters(gmm, part)
        mix = dist.MixtureSameFamily(
            dist.Categorical(probs=w), dist.MultivariateNormal(locs, covariance_matrix=cov)
        )
        out.append(mix.log_prob(x[:, None, :]).T)  # (S_batch, N)
    return torch.cat(out).reshape(c, s, -1)


def _worst(values: np.ndarray, reduce) -> float:
    """NaN-aware max/min over a diagnostic array (NaN when every element is NaN, e.g. one chain)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return float(reduce(finite)) if finite.size else float("nan")


def _run_chain(
    model,
    x,
    strategy,
    seed,
    num_samples,
    warmup_steps,
    target_accept_prob,
    max_tree_depth,
    jit_compile,
    progress,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Run one NUTS chain; return its draws of the global sites and its diagnostics.

    The diagnostics are ``divergences`` (divergent transitions, warm-up included),
    ``diverging`` (a ``(num_samples,)`` bool array over the kept draws) and ``accept_prob``
    (mean acceptance probability of the kept draws).
    """
    pyro.set_rng_seed(seed)
    kernel = NUTS(
        model.model,
        max_plate_nesting=1,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        jit_compile=jit_compile,
        ignore_jit_warnings=True,
        init_strategy=strategy,
    )
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=not progress)
    mcmc.run(x)
    draws = {k: v.detach() for k, v in mcmc.get_samples().items() if k in COMPONENT_SITES}
    diag = mcmc.diagnostics()
    where = [int(i) for i in diag.get("divergences", {}).get("chain 0", [])]
    diverging = np.zeros(num_samples, dtype=bool)
    diverging[[i for i in where if 0 <= i < num_samples]] = True
    return draws, {
        "divergences": len(where),
        "diverging": diverging,
        "accept_prob": float(diag.get("acceptance rate", {}).get("chain 0", float("nan"))),
    }


def fit_nuts(
    gmm: GaussianMixtureModel,
    data: torch.Tensor,
    *,
    num_samples: int = 500,
    warmup_steps: int = 500,
    num_chains: int = 2,
    init: dict[str, torch.Tensor] | None = None,
    reference_locs: torch.Tensor | None = None,
    enumerate: bool = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    jit_compile: bool = False,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = 1,
) -> FitResult:
    """Sample the mixture's posterior over its globals with NUTS; return a :class:`FitResult`.

    ``init`` (site values, e.g. from :meth:`GaussianMixtureModel.init_values` of an EM fit)
    starts every chain there; otherwise chains start at the prior median. Draws are aligned
    across draws and chains by :func:`align_components` (to ``reference_locs`` if given).
    ``result.params`` holds ``samples`` (aligned, each (chains, draws, ...)), ``permutations``,
    ``diverging`` (a (chains, draws) bool array), ``rhat`` and ``ess_bulk`` (per site, worst
    over elements), ``max_rhat``, ``divergences`` (count over all chains, warm-up included),
    ``posterior_mean`` (:class:`MixtureParameters` of the aligned posterior means) and
    ``mean_log_likelihood`` (log-likelihood of the data averaged over draws, nats per point).
    The result has ``kind="nuts"``; ``steps`` (and ``epochs``) count MCMC transitions, warm-up
    and draws of all chains; ``seconds``/``cpu_seconds`` are the wall/CPU seconds of the
    chains. ``history`` has one row per chain (cumulative ``step``, ``seconds``,
    ``cpu_seconds``; the chain's ``divergences`` and ``accept_prob``).
    ``pyro_gen.diagnostics.to_inference_data(result, x)`` gives its InferenceData.
    ``num_threads`` sets torch's intra-op
    threads while sampling (restored afterwards; ``None`` leaves them): NUTS works on tiny
    tensors, where extra threads only add synchronization.
    """
    x = as_data_tensor(data, "data", min_rank=2, max_rank=2).float()
    gmm.check_data(x)
    for name, v in (("num_samples", num_samples), ("num_chains", num_chains)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    sampler_model = GaussianMixtureModel(
        gmm.num_components,
        gmm.dim,
        gmm.covariance_type,
        prior_loc=gmm.prior_loc,
        prior_scale=gmm.prior_scale,
        scale0=gmm.scale0,
        concentration=gmm.concentration,
        eta=gmm.eta,
        marginalized=not enumerate,
    )
    strategy = init_to_value(values=init) if init else init_to_median
    chains: list[dict[str, torch.Tensor]] = []
    diverging = []
    history: list[dict] = []
    transitions = warmup_steps + num_samples
    seconds = cpu_seconds = 0.0
    saved_threads = torch.get_num_threads()
    with torch_threads(num_threads):
        for chain in range(num_chains):
            t0, c0 = time.perf_counter(), time.process_time()
            draws, diag = _run_chain(
                sampler_model,
                x,
                strategy,
                seed + chain,
                num_samples,
                warmup_steps,
                target_accept_prob,
                max_tree_depth,
                jit_compile,
                progress,
            )
            seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
            chains.append(draws)
            diverging.append(diag["diverging"])
            step = (chain + 1) * transitions
            history.append(
                {
                    "step": step,
                    "epoch": float(step),
                    "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "eval_seconds": 0.0,
                    "chain": chain,
                    "divergences": diag["divergences"],
                    "accept_prob": diag["accept_prob"],
                }
            )
    raw = {name: torch.stack([c[name] for c in chains]) for name in chains[0]}
    aligned, perms = align_components(raw, reference_locs)
    steps = num_chains * transitions
    result = FitResult(
        model=gmm,
        history=history,
        steps=steps,
        epochs=float(steps),
        seconds=seconds,
        estimator="nuts",
        kind="nuts",
        cpu_seconds=cpu_seconds,
        threads=num_threads if num_threads is not None else saved_threads,
        device="cpu",
        params={"samples": aligned, "permutations": perms, "diverging": np.stack(diverging)},
    )
    posterior = az.convert_to_dataset({name: v.numpy() for name, v in aligned.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one chain: R-hat undefined (NaN) and ArviZ says so
        rhat = az.rhat(posterior)
        ess = az.ess(posterior, method="bulk")
    result.params["rhat"] = {k: _worst(rhat[k].values, np.nanmax) for k in rhat.data_vars}
    result.params["ess_bulk"] = {k: _worst(ess[k].values, np.nanmin) for k in ess.data_vars}
    rh = [v for v in result.params["rhat"].values() if np.isfinite(v)]
    result.params["max_rhat"] = max(rh) if rh else float("nan")
    result.params["divergences"] = int(sum(r["divergences"] for r in history))
    result.params["warnings"] = convergence_warnings(
        result.params["max_rhat"],
        min(result.params["ess_bulk"].values(), default=float("nan")),
        result.params["divergences"],
        num_chains,
    )
    for message in result.params["warnings"]:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in aligned.items()}
    mean = {k: v.mean(0) for k, v in flat.items()}
    if "corr_chol" in mean:  # the mean of Cholesky factors is not one: average covariances instead
        _, _, cov = draw_parameters(gmm, flat)
        result.params["posterior_mean"] = MixtureParameters(mean["weights"], mean["locs"], cov.mean(0))
    else:
        result.params["posterior_mean"] = gmm.parameters_from(mean)
    ll = pointwise_log_likelihood(gmm, aligned, x)
    result.params["mean_log_likelihood"] = float(ll.mean())
    return result


def log_predictive_density(result: FitResult, x: torch.Tensor) -> float:
    """Return the log posterior predictive density of ``x`` averaged per point (nats).

    ``(1/N) sum_n log (1/S) sum_s p(x_n | theta_s)`` over all NUTS draws (the lppd of
    Gelman et al.; for held-out ``x`` an honest predictive score).
    """
    x = as_data_tensor(x, "x", min_rank=2, max_rank=2)
    ll = pointwise_log_likelihood(result.model, result.params["samples"], x)
    ll = ll.reshape(-1, ll.shape[-1])
    return float((torch.logsumexp(ll, 0) - np.log(ll.shape[0])).mean())
