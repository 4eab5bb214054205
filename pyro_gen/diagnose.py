"""``pyro-gen diagnose RUN_DIR``: diagnose a run folder's posterior and write the results into it.

Writes ``diagnostics.nc`` (InferenceData, netCDF), ``diagnostics.json`` (every number) and
PNG figures (rank plot, ESS, PSIS k-hat, KL per latent dimension), and prints a table with
a plain-language verdict per line. Diagnose needs a model with latent variables and a guide
over them; a run without (an autoregressive model, a flow, a GAN) is refused with one line
saying what the run offers instead, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

INFERENCE_DATA_FILE = "diagnostics.nc"
SUMMARY_FILE = "diagnostics.json"
METRICS_FILE = "metrics.json"
MAX_PANELS = 12  # quantities in the rank and ESS figures (the first data point's first latents)
_SAMPLE_METRICS = {
    "modes_captured": "mode coverage",
    "high_quality_share": "share of high-quality samples",
    "frechet_distance": "Frechet distance",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``diagnose`` verb's arguments to ``p``."""
    p.add_argument("run_dir", help="a run folder written by `pyro-gen fit`")
    p.add_argument("--num-points", type=int, default=200, help="test points to diagnose")
    p.add_argument("--num-samples", type=int, default=200, help="guide draws per chain in the InferenceData")
    p.add_argument("--num-chains", type=int, default=2, help="chains of guide draws")
    p.add_argument(
        "--k", type=int, default=1000, help="importance samples for k-hat and the IS log-likelihood"
    )
    p.add_argument("--gap-points", type=int, default=16, help="points for the amortization gap (0 skips it)")
    p.add_argument("--gap-steps", type=int, default=300, help="optimizer steps per-point guide")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def _without_tables(obj: Any) -> Any:
    """Drop the bulky per-point ``table``/``elpd_data`` entries of ArviZ results, at any depth."""
    if isinstance(obj, dict):
        return {k: _without_tables(v) for k, v in obj.items() if k not in ("table", "elpd_data")}
    return obj


def what_the_run_offers(run_dir: str | os.PathLike) -> str:
    """Return a phrase naming what a run folder's ``metrics.json`` holds instead of diagnostics.

    E.g. ``"its exact test log-likelihood is in metrics.json"`` for exact-likelihood models,
    the sample metrics of a GAN, the reconstruction loss of an autoencoder.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"and the run folder has no readable {METRICS_FILE}"
    if not isinstance(metrics, dict):
        return f"its metrics are in {METRICS_FILE}"
    if metrics.get("test_log_likelihood") is not None:
        exact = "exact " if metrics.get("likelihood_kind") == "exact" else ""
        return f"its {exact}test log-likelihood is in {METRICS_FILE}"
    sample = [words for key, words in _SAMPLE_METRICS.items() if metrics.get(key) is not None]
    if sample:
        return f"its sample metrics ({', '.join(sample)}) are in {METRICS_FILE}"
    if metrics.get("test_loss") is not None:
        return f"its test reconstruction loss is in {METRICS_FILE}"
    return f"its metrics are in {METRICS_FILE}"


def guide_latent_sites(model: Any, x: Any) -> list[str]:
    """Return the names of the latent (unobserved, non-auxiliary) sample sites of ``model.guide`` on ``x``."""
    from pyro import poutine

    trace = poutine.trace(model.guide).get_trace(x)
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site["infer"].get("is_auxiliary")
    ]


def check_diagnosable(model: Any, family: str, x: Any, run_dir: str | os.PathLike) -> None:
    """Raise ``ValueError`` (one line) unless ``model`` has a model/guide pair with latent sites on ``x``.

    The line says what diagnose needs and what the run offers instead; returns None.
    """
    needs = "diagnose needs a model with latent variables and a guide over them"
    if not (callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))):
        raise ValueError(
            f"the {family} family has no model/guide pair: {needs} ({what_the_run_offers(run_dir)})"
        )
    if not guide_latent_sites(model, x[:2]):
        raise ValueError(
            f"the {family} family has no latent variables: {needs} ({what_the_run_offers(run_dir)})"
        )


def _panel_coords(idata: Any, var: str, max_panels: int = MAX_PANELS) -> dict[str, list] | None:
    """Coordinates selecting the first data point and at most ``max_panels`` entries of ``var``."""
    da = idata.posterior[var]
    coords: dict[str, list] = {}
    budget = max_panels
    for dim in da.dims:
        if dim in ("chain", "draw"):
            continue
        values = list(da.coords[dim].values) if dim in da.coords else list(range(da.sizes[dim]))
        take = 1 if dim == "data" else max(1, budget)
        coords[dim] = values[:take]
        budget = max(1, budget // max(1, len(coords[dim])))
    return coords or None


def diagnose_run(
    run_dir: str | os.PathLike,
    *,
    num_points: int = 200,
    num_samples: int = 200,
    num_chains: int = 2,
    k: int = 1000,
    gap_points: int = 16,
    gap_steps: int = 300,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Diagnose the posterior of a run folder's model on its test data; write files into the folder.

    Returns the summary dict written to ``diagnostics.json`` (nats per data point for
    likelihoods and gaps) with ``rows``: ``(quantity, value, verdict)`` for the printed table,
    ``files``: the written file names, and ``data_rows``: ``"test"`` (the first ``num_points``
    test rows), or ``"train"`` for a user program whose guide is over global latents (its
    posterior is that of the training rows, so every training row is used).
    """
    import pyro
    import torch

    from .diagnostics.convert import save_inference_data, to_inference_data
    from .diagnostics.mcmc import loo, mcmc_diagnostics
    from .diagnostics.variational import (
        active_units,
        all_in_data_plate,
        amortization_gap,
        importance_gap,
        kl_per_dim,
        psis_diagnostic,
    )
    from .report.diagnostics import plot_ess, plot_khat, plot_kl_per_dim, plot_rank
    from .report.files import write_json
    from .runs import load_run, load_run_data

    for name, val in (("num_points", num_points), ("num_samples", num_samples), ("num_chains", num_chains)):
        if val < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {val}")
    if k < 20:
        raise ValueError(f"--k must be at least 20 for a Pareto tail fit, got {k}")
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    model, config = load_run(run_dir)
    if not (callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))):
        check_diagnosable(model, config["family"], None, run_dir)
    data = load_run_data(config)
    x = data.test[:num_points]
    if isinstance(model, torch.nn.Module):
        model.eval()
    pyro.set_rng_seed(seed)
    check_diagnosable(model, config["family"], x, run_dir)  # before anything is written
    rows_used = "test"
    if config["family"] == "user" and not all_in_data_plate(model.model, model.guide, (x[:2],)):
        # a guide over global latents approximates p(z | training rows): its importance weights,
        # k-hat and LOO are those of that posterior, so they are computed on every training row
        x, rows_used = data.train, "train"
    pyro.set_rng_seed(seed)
    rows: list[tuple[str, str, str]] = []
    summary: dict[str, Any] = {
        "run": str(run_dir),
        "family": config["family"],
        "num_points": int(x.shape[0]),
        "data_rows": rows_used,
    }

    try:
        idata = to_inference_data(model, x, num_samples=num_samples, num_chains=num_chains)
    except RuntimeError as e:  # a user's program that does not broadcast over a batch of draws
        if config["family"] != "user":
            raise
        first = str(e).splitlines()[0]
        raise ValueError(
            "diagnose draws the guide under a plate of particles on the left of every site: the "
            f"program must broadcast over a leading batch dimension (index with [..., i]); it failed "
            f"({first})"
        ) from None
    files = [save_inference_data(idata, run_dir / INFERENCE_DATA_FILE).name]
    amortized = all_in_data_plate(model.model, model.guide, (x,))

    ps = psis_diagnostic(model, x, num_samples=k)
    summary["psis"] = ps
    if ps["per_point"]:
        value = f"median {ps['median_khat']:.2f}, max {ps['max_khat']:.2f}"
    else:
        value = f"{ps['khat']:.2f}"
    rows.append((f"PSIS k-hat (S={k})", value, ps["verdict"]))
    files.append(plot_khat(np.atleast_1d(ps["khat"]), run_dir / "diag_khat.png").name)

    gap = importance_gap(model, x, k=k, progress=progress)
    summary["importance"] = gap
    rows.append(
        (f"IS log-likelihood (k={k})", f"{gap['log_likelihood']:.3f} nats/pt", "estimate of log p(x)")
    )
    rows.append(("ELBO", f"{gap['elbo']:.3f} nats/pt", "lower bound on log p(x)"))
    rows.append(
        (
            "IS - ELBO gap",
            f"{gap['gap']:.3f} nats/pt",
            "~ KL(q || posterior) per point: " + ("small" if gap["gap"] < 1.0 else "the guide is loose"),
        )
    )

    if amortized:
        au = active_units(model, x)
        kl = kl_per_dim(model, x)
        summary["active_units"], summary["kl_per_dim"] = au, kl
        n_dead = au["num_units"] - au["num_active"]
        rows.append(
            (
                "active units",
                f"{au['num_active']}/{au['num_units']}",
                "no posterior collapse"
                if n_dead == 0
                else f"{n_dead} latent dims collapsed (unused by the decoder)",
            )
        )
        rows.append(
            (
                "KL to prior",
                f"{kl['total']:.3f} nats/pt",
                f"{kl['num_collapsed']} dims with KL < {kl['threshold']} nats",
            )
        )
        files.append(plot_kl_per_dim(kl["kl"], run_dir / "diag_kl_per_dim.png", au["activity"]).name)
        if gap_points > 0:
            ag = amortization_gap(
                model, x, num_points=gap_points, steps=gap_steps, seed=seed, progress=progress
            )
            summary["amortization"] = ag
            bottleneck = (
                "the encoder (amortization) is the larger gap"
                if ag["amortization_gap"] > ag["approximation_gap"]
                else "the Gaussian family (approximation) is the larger gap"
            )
            rows.append(("amortization gap", f"{ag['amortization_gap']:.3f} nats/pt", bottleneck))
            rows.append(
                (
                    "approximation gap",
                    f"{ag['approximation_gap']:.3f} nats/pt",
                    "log p(x) - best Gaussian ELBO",
                )
            )

    latents = list(idata.posterior.data_vars)
    coords = _panel_coords(idata, latents[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diag = mcmc_diagnostics(idata, var_names=latents)
    summary["chains"] = {k_: v for k_, v in diag.items() if k_ != "table"}
    nq = len(diag["table"])
    # One guide's chains are independent draws: R-hat and ESS only confirm the conversion (R-hat
    # ~ 1, ESS ~ draws); across SVI runs from different seeds they would measure disagreement.
    note = f"independent guide draws; max over {nq} quantities, expected ~1"
    rows.append(("R-hat across chains (max)", f"{diag['max_rhat']:.3f}", note))
    total = diag["num_chains"] * diag["num_draws"]
    rows.append(("bulk ESS (min)", f"{diag['min_ess_bulk']:.0f}", f"of {total} independent draws"))
    rows.append(("tail ESS (min)", f"{diag['min_ess_tail']:.0f}", f"of {total} independent draws"))
    if not amortized:
        lo = loo(idata)
        summary["loo"] = lo
        rows.append(("PSIS-LOO elpd", f"{lo['elpd_loo']:.2f} +- {lo['se']:.2f} nats", lo["verdict"]))
    files.append(plot_rank(idata, run_dir / "diag_rank.png", var_names=latents[:1], coords=coords).name)
    files.append(
        plot_ess(idata, run_dir / "diag_ess.png", var_names=latents[:1], coords=coords, min_ess=total).name
    )
    summary["rows"] = rows
    summary["files"] = files
    summary["seconds"] = time.perf_counter() - t0
    write_json(_without_tables(summary), run_dir / SUMMARY_FILE)
    summary["files"].append(SUMMARY_FILE)
    return summary


def format_table(rows: list[tuple[str, str, str]]) -> str:
    """Return the rows as an aligned text table (quantity, value, verdict)."""
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'quantity':<{w0}}  {'value':<{w1}}  verdict", "-" * (w0 + w1 + 12)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Run ``pyro-gen diagnose``; print the table; return 0."""
    summary = diagnose_run(
        args.run_dir,
        num_points=args.num_points,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        k=args.k,
        gap_points=args.gap_points,
        gap_steps=args.gap_steps,
        seed=args.seed,
        progress=not args.no_progress,
    )
    which = summary.get("data_rows", "test")
    print(f"diagnostics of {args.run_dir} ({summary['family']}, {summary['num_points']} {which} points)")
    print(format_table(summary["rows"]))
    print(f"wrote: {', '.join(summary['files'])} in {args.run_dir}")
    return 0
