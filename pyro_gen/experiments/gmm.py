"""``pyro-gen compare gmm``: one Gaussian mixture fitted four ways on the same data, side by side.

:func:`compare_gmm` fits closed-form EM, SVI-MAP (``AutoDelta``), SVI-variational
(``AutoNormal``), both with ``TraceEnum_ELBO`` over the enumerated assignments, and NUTS
(assignments summed out), all from the same starting point (EM's default: the labels of one
scikit-learn k-means run, then one M-step; ``init`` chooses another), then reports for each
the train and held-out log-likelihood (nats per point), the costs of each fit (read from its
:class:`~pyro_gen.inference.FitResult`: training wall and CPU seconds, ms per step, threads,
device) and the component parameters matched to EM's components by the Hungarian algorithm. It also selects
K by BIC (EM) and by PSIS-LOO (NUTS, ArviZ).

Log-likelihoods: EM and MAP are point estimates and are scored by the plug-in density
``log p(x | theta_hat)``. The variational posterior and NUTS are scored both at their
posterior mean (plug-in) and by the log posterior predictive density
``log (1/S) sum_s p(x | theta_s)`` (``*_predictive`` keys), the Bayesian's own score.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer import TraceEnum_ELBO

from ..data import load_data, sample_gaussian_mixture
from ..data.checks import as_data_tensor
from ..inference.em import GaussianMixtureEM, initial_parameters
from ..inference.mcmc import fit_nuts, log_predictive_density, match_components
from ..inference.svi import fit
from ..models.gmm import GaussianMixtureModel, MixtureParameters
from .arguments import GMM_METHODS as METHODS
from .costs import fit_costs


def _guide_draws(guide, x: torch.Tensor, num: int) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        draws = [guide(x) for _ in range(num)]
    return {k: torch.stack([d[k] for d in draws])[None] for k in draws[0]}  # (1, S, ...)


def compare_gmm(
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    num_components: int,
    covariance_type: str = "full",
    *,
    methods: tuple[str, ...] = METHODS,
    svi_steps: int = 1000,
    svi_lr: float = 0.05,
    nuts_samples: int = 200,
    nuts_warmup: int = 200,
    nuts_chains: int = 2,
    k_range: tuple[int, ...] = (),
    loo_k_range: tuple[int, ...] | None = None,
    init: str = "kmeans",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit a ``num_components`` mixture with each of ``methods`` on ``x_train``; return the report dict.

    The dict has ``methods`` (per method: ``train_log_likelihood``, ``test_log_likelihood``
    in nats per point, ``costs`` (:func:`~pyro_gen.experiments.costs.fit_costs` of the
    method's :class:`~pyro_gen.inference.FitResult`, plus ``final_eval_seconds``: wall seconds
    of the scoring after the fit), ``weights``/``locs`` matched to EM's
    components, ``max_loc_diff_vs_em``, plus ``*_predictive`` for the Bayesian methods and
    R-hat/divergences for NUTS), ``mixtures`` (the matched :class:`MixtureParameters`, not
    JSON), ``histories`` (per method), and when ``k_range`` is given ``model_selection``
    with ``bic`` per K (EM), ``loo`` per K (NUTS, over ``loo_k_range``, default
    ``k_range``) and the selected K of each.
    """
    x_train = as_data_tensor(x_train, "x_train", min_rank=2, max_rank=2).float()
    x_test = as_data_tensor(x_test, "x_test", min_rank=2, max_rank=2).float()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
    if covariance_type not in ("full", "diag"):
        raise ValueError(
            f"covariance_type must be 'full' or 'diag' (the Pyro model's), got {covariance_type!r}"
        )
    k = num_components
    w0, m0, c0 = initial_parameters(x_train, k, covariance_type, init=init, seed=seed)
    gmm = GaussianMixtureModel.from_data(x_train, k, covariance_type)
    init = gmm.init_values(w0, m0, c0)
    report: dict[str, Any] = {"methods": {}, "mixtures": {}, "histories": {}, "init": init}

    # EM always runs: it is the reference the others are matched to.
    em = GaussianMixtureEM(
        k,
        covariance_type=covariance_type,
        tol=1e-6,
        max_iter=1000,
        seed=seed,
        weights_init=w0.numpy(),
        means_init=m0.numpy(),
        precisions_init=_precisions(c0, covariance_type),
    ).fit(x_train)
    ref = MixtureParameters(em.weights_, em.means_, em.covariance_matrices())
    fits: dict[str, tuple[MixtureParameters, Any, dict]] = {"em": (ref, em.result_, {})}
    scoring: dict[str, float] = {}  # wall seconds of each method's scoring after its fit

    for method in ("svi-map", "svi-normal"):
        if method not in methods:
            continue
        pyro.clear_param_store()
        guide = gmm.map_guide(init) if method == "svi-map" else gmm.variational_guide(init)
        res = fit(
            gmm.model,
            x_train,
            guide=guide,
            estimator=TraceEnum_ELBO(max_plate_nesting=1),
            lr=svi_lr,
            batch_size=x_train.shape[0],
            steps=svi_steps,
            log_every=max(1, svi_steps // 100),
            seed=seed,
            progress=progress,
        )
        t0 = time.perf_counter()
        params = gmm.parameters_from(guide.median(x_train))
        extra: dict[str, Any] = {"final_elbo": res.final_train_elbo}
        if method == "svi-normal":
            draws = _guide_draws(guide, x_train, 200)
            pseudo = type(res)(
                model=gmm,
                history=[],
                steps=0,
                epochs=0.0,
                seconds=0.0,
                estimator="svi-normal",
                params={"samples": draws},
            )
            extra["train_log_likelihood_predictive"] = log_predictive_density(pseudo, x_train)
            extra["test_log_likelihood_predictive"] = log_predictive_density(pseudo, x_test)
        scoring[method] = time.perf_counter() - t0
        fits[method] = (params, res, extra)

    if "nuts" in methods:
        res = fit_nuts(
            gmm,
            x_train,
            num_samples=nuts_samples,
            warmup_steps=nuts_warmup,
            num_chains=nuts_chains,
            init=init,
            reference_locs=ref.locs,
            seed=seed,
            progress=progress,
        )
        t0 = time.perf_counter()
        extra = {
            "train_log_likelihood_predictive": log_predictive_density(res, x_train),
            "test_log_likelihood_predictive": log_predictive_density(res, x_test),
            "max_rhat": res.params["max_rhat"],
            "min_ess_bulk": min(res.params["ess_bulk"].values()),
            "divergences": res.params["divergences"],
        }
        scoring["nuts"] = time.perf_counter() - t0
        fits["nuts"] = (res.params["posterior_mean"], res, extra)

    for method, (params, result, extra) in fits.items():
        t0 = time.perf_counter()
        matched = params.permute(match_components(params, ref))
        report["mixtures"][method] = matched
        report["histories"][method] = result.history
        train_ll, test_ll = float(matched.log_prob(x_train).mean()), float(matched.log_prob(x_test).mean())
        costs = fit_costs(result)
        costs["final_eval_seconds"] = scoring.get(method, 0.0) + time.perf_counter() - t0
        report["methods"][method] = {
            "train_log_likelihood": train_ll,
            "test_log_likelihood": test_ll,
            "costs": costs,
            "weights": matched.weights.tolist(),
            "locs": matched.locs.tolist(),
            "max_loc_diff_vs_em": float((matched.locs - ref.locs).abs().max()),
            **extra,
        }
    report["methods"]["em"].update(bic=em.bic(x_train), converged=em.converged_, n_iter=em.n_iter_)

    if k_range:
        report["model_selection"] = select_k(
            x_train,
            k_range,
            covariance_type,
            loo_k_range=loo_k_range if loo_k_range is not None else k_range,
            nuts_samples=nuts_samples,
            nuts_warmup=nuts_warmup,
            nuts_chains=nuts_chains,
            seed=seed,
            progress=progress,
        )
    return report


def _precisions(cov: torch.Tensor, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return torch.linalg.inv(cov).numpy()
    return 1.0 / cov.diagonal(dim1=-2, dim2=-1).numpy()


def psis_loo(result: Any, x: torch.Tensor) -> dict[str, Any]:
    """Return PSIS-LOO of a NUTS fit on ``x`` as JSON-ready numbers (:func:`pyro_gen.diagnostics.loo`).

    ``elpd_loo`` and ``se`` in nats summed over points, ``elpd_loo_per_point``, ``p_loo``,
    ``looic``, ``max_pareto_k``, ``good_k``, ``num_bad_k`` and the ``verdict``.
    """
    from ..diagnostics import loo, to_inference_data

    res = loo(to_inference_data(result, x))
    return {k: v for k, v in res.items() if k not in ("pareto_k", "elpd_data")}


def select_k(
    x: torch.Tensor,
    k_range: tuple[int, ...],
    covariance_type: str = "full",
    *,
    loo_k_range: tuple[int, ...] = (),
    nuts_samples: int = 200,
    nuts_warmup: int = 200,
    nuts_chains: int = 2,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Choose K by BIC of EM fits (``n_init=3`` k-means starts; lower is better) and PSIS-LOO of NUTS.

    PSIS-LOO: higher is better.

    Returns ``{"k": [...], "bic": [...], "best_k_bic", "loo_k": [...], "loo": [dict per K], "best_k_loo"}``
    (BIC in nats, elpd_loo in nats summed over points).
    """
    out: dict[str, Any] = {"k": list(k_range), "bic": []}
    for k in k_range:
        em = GaussianMixtureEM(
            k, covariance_type=covariance_type, n_init=3, tol=1e-6, max_iter=1000, seed=seed
        )
        out["bic"].append(em.fit(x).bic(x))
    out["best_k_bic"] = int(k_range[int(np.argmin(out["bic"]))])
    out["loo_k"], out["loo"] = list(loo_k_range), []
    for k in loo_k_range:
        gmm = GaussianMixtureModel.from_data(x, k, covariance_type)
        w0, m0, c0 = initial_parameters(x, k, covariance_type, seed=seed)
        res = fit_nuts(
            gmm,
            x,
            num_samples=nuts_samples,
            warmup_steps=nuts_warmup,
            num_chains=nuts_chains,
            init=gmm.init_values(w0, m0, c0),
            seed=seed,
            progress=progress,
        )
        out["loo"].append({**psis_loo(res, x), "max_rhat": res.params["max_rhat"]})
    if loo_k_range:
        out["best_k_loo"] = int(loo_k_range[int(np.argmax([r["elpd_loo"] for r in out["loo"]]))])
    return out


# ---------------------------------------------------------------------------- command line
SYNTHETIC_MEANS = torch.tensor([[0.0, 0.0], [4.0, 0.5], [1.0, 4.0]])
SYNTHETIC_SCALES = torch.tensor([0.8, 1.0, 0.7])


def synthetic_mixture(
    num_train: int = 400, num_test: int = 400, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(train, test)`` drawn from a known 3-component 2-D mixture (``SYNTHETIC_MEANS``)."""
    x, _ = sample_gaussian_mixture(num_train + num_test, SYNTHETIC_MEANS, SYNTHETIC_SCALES, seed=seed)
    return x[:num_train], x[num_train:]


def load_for_gmm(spec: str, pca_dim: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Return ``(train, test, name)``: ``synthetic`` or any ``load_data`` spec, optionally PCA-projected.

    PCA (scikit-learn) is fitted on the training split only; projected data are standardized
    by the training split's overall scale.
    """
    if spec == "synthetic":
        train, test = synthetic_mixture(seed=seed)
        name = "synthetic"
    else:
        data = load_data(spec, binarize=None, seed=seed)
        train, test, name = data.train.float(), data.test.float(), data.name
    if pca_dim:
        from sklearn.decomposition import PCA

        if not 1 <= pca_dim <= train.shape[1]:
            raise ValueError(f"--pca-dim must be between 1 and {train.shape[1]}, got {pca_dim}")
        pca = PCA(pca_dim, random_state=seed).fit(train.numpy())
        scale = float(np.sqrt(pca.explained_variance_[0]))
        train = torch.as_tensor(pca.transform(train.numpy()) / scale, dtype=torch.float32)
        test = torch.as_tensor(pca.transform(test.numpy()) / scale, dtype=torch.float32)
        name = f"{name}-pca{pca_dim}"
    return train, test, name


def _parse_ks(text: str) -> tuple[int, ...]:
    if not text:
        return ()
    if "-" in text and "," not in text:
        lo, hi = (int(v) for v in text.split("-"))
        return tuple(range(lo, hi + 1))
    return tuple(int(v) for v in text.split(","))


def write_report(report: dict, x_train: torch.Tensor, out: Path) -> list[str]:
    """Write ``comparison.json``, ``report.md`` and the PNG figures of ``report`` into ``out``.

    Returns the file names. ``traces.png`` plots each method's objective against its own
    iterations (EM: training log-likelihood per EM iteration; SVI: ELBO per step; nats per
    point), ``objective_vs_seconds.png`` all of them against training seconds.
    """
    from ..report import write_comparison_index, write_json
    from ..report.estimators import cost_table, plot_curves, timing_note, write_markdown
    from ..report.gmm import plot_mixtures_2d, plot_model_selection, plot_traces

    out.mkdir(parents=True, exist_ok=True)
    files = [
        write_json(
            {k: v for k, v in report.items() if k not in ("mixtures", "histories")}, out / "comparison.json"
        ).name
    ]
    files.append(plot_mixtures_2d(x_train, report["mixtures"], out / "mixtures.png").name)
    files.append(
        plot_traces({k: v for k, v in report["histories"].items() if k != "nuts"}, out / "traces.png").name
    )
    from ..report.gmm import history_kind, objective_labels

    curves = [
        {"name": f"{k} ({objective_labels(history_kind(v))['name']})", "history": v}
        for k, v in report["histories"].items()
        if k != "nuts"
    ]
    files.append(
        plot_curves(
            curves,
            out / "objective_vs_seconds.png",
            y="train_elbo",  # EM logs its log-likelihood under this key too (equal after an E-step)
            x="seconds",
            ylabel="EM: log-likelihood / SVI: ELBO (nats per data point)",
            title="Gaussian mixture: objective against training time",
        ).name
    )
    sel = report.get("model_selection")
    if sel:
        elpd = [r["elpd_loo"] for r in sel["loo"]] if sel["loo"] and sel["loo_k"] == sel["k"] else None
        files.append(plot_model_selection(sel["k"], sel["bic"], elpd, out / "model_selection.png").name)
    methods = [{"name": k, "costs": v["costs"]} for k, v in report["methods"].items()]
    text = "\n".join(
        [
            "# Gaussian mixture: EM, SVI and NUTS",
            "",
            "Log-likelihoods in nats per point; `test pred` is the log posterior predictive density.",
            "",
            "```",
            format_table(report),
            "```",
            "",
            "## Costs",
            "",
            cost_table(methods),
            "",
            timing_note(methods) + " EM steps are iterations (all restarts); NUTS steps are transitions "
            "(warm-up and draws, all chains).",
        ]
    )
    files.append(write_markdown(text, out / "report.md").name)
    files.append(write_comparison_index(out).name)
    return files


def format_table(report: dict) -> str:
    """Return the per-method table as text: log-likelihoods (nats per point) and training costs.

    ``train s`` is training wall seconds, ``ms/step`` and ``CPU ms/step`` wall and process-CPU
    milliseconds per step, all from the method's :class:`~pyro_gen.inference.FitResult`.
    """
    lines = [
        f"{'method':<11} {'train LL':>9} {'test LL':>9} {'test pred':>9} {'train s':>8} {'ms/step':>8} "
        f"{'CPU ms/st':>9} {'max|dloc|':>9}"
    ]
    for name, r in report["methods"].items():
        pred = r.get("test_log_likelihood_predictive")
        c = r["costs"]
        lines.append(
            f"{name:<11} {r['train_log_likelihood']:>9.4f} {r['test_log_likelihood']:>9.4f} "
            f"{(f'{pred:.4f}' if pred is not None else '-'):>9} {c['train_seconds']:>8.2f} "
            f"{c['ms_per_step']:>8.2f} {c['cpu_ms_per_step']:>9.2f} {r['max_loc_diff_vs_em']:>9.4f}"
        )
    sel = report.get("model_selection")
    if sel:
        lines.append("K:        " + " ".join(f"{k:>9d}" for k in sel["k"]))
        lines.append(
            "BIC (EM): " + " ".join(f"{v:>9.1f}" for v in sel["bic"]) + f"   -> K={sel['best_k_bic']}"
        )
        if sel["loo"]:
            lines.append(
                "elpd_loo: "
                + " ".join(f"{r['elpd_loo']:>9.1f}" for r in sel["loo"])
                + f"   -> K={sel.get('best_k_loo')} (K={', '.join(map(str, sel['loo_k']))})"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare gmm`` from parsed flags; print the table and the report folder; return 0."""
    train, test, name = load_for_gmm(args.data, args.pca_dim, seed=args.seed)
    methods = tuple(m for m in args.methods.split(",") if m)
    report = compare_gmm(
        train,
        test,
        args.components,
        args.covariance_type,
        methods=methods,
        svi_steps=args.svi_steps,
        svi_lr=args.svi_lr,
        nuts_samples=args.nuts_samples,
        nuts_warmup=args.nuts_warmup,
        nuts_chains=args.nuts_chains,
        k_range=_parse_ks(args.k_range),
        loo_k_range=None if args.loo_k_range is None else _parse_ks(args.loo_k_range),
        seed=args.seed,
        progress=not args.no_progress,
    )
    report["data"] = {"name": name, "train": list(train.shape), "test": list(test.shape)}
    out = Path(args.out or f"runs/compare-gmm-{name}")
    files = write_report(report, train, out)
    print(
        f"Gaussian mixture, K={args.components}, {args.covariance_type} covariance, "
        f"data {name} {tuple(train.shape)}"
    )
    print(format_table(report))
    print(f"report: {out}/ ({', '.join(files)})")
    return 0
