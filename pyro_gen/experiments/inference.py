"""``pyro-gen compare inference --model FILE.py:NAME``: SVI guides against NUTS on your program.

Each guide (``AutoNormal``, ``AutoLowRankMultivariateNormal``, ``AutoIAFNormal``, and the
program's own with ``own``) is trained by the engine (:func:`pyro_gen.inference.fit`, full
batch, reparameterized ELBO, Adam with a cosine-decayed learning rate, the same seed and
steps) on the training rows; NUTS (``pyro.infer.MCMC``, one chain after another) samples the
same model's posterior and is the reference. Per method: PSIS k-hat of the guide
(:func:`~pyro_gen.diagnostics.variational.psis_diagnostic`, ArviZ's Pareto fit), the
posterior mean and standard deviation of every latent element against NUTS's (errors in NUTS
standard deviations), the held-out log predictive density per test point and the wall
seconds. The report folder holds ``report.md``, ``inference.csv`` (one row per method and
latent element), ``comparison.json`` and ``index.html``.

Parameters of the model itself (``pyro.param`` in the model) are held at their initial values
by NUTS; a program with such parameters is compared on its latents only.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from ..data import DataSplit
from .arguments import USER_GUIDES, split_names

GUIDE_NAMES = {
    "normal": "AutoNormal",
    "lowrank": "AutoLowRankMultivariateNormal",
    "iaf": "AutoIAFNormal",
    "own": "own guide",
}


def _latent_names(model: Any, x: torch.Tensor) -> list[str]:
    from ..families.user import latent_sites

    return list(latent_sites(poutine.trace(model.model).get_trace(x)))


def guide_draws(
    model: Any, x: torch.Tensor, names: Sequence[str], num_samples: int
) -> dict[str, torch.Tensor]:
    """Return ``{site: (num_samples, ...)}`` draws of the latent sites from the guide on ``x``."""
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.no_grad():
        for _ in range(num_samples):
            tr = poutine.trace(model.guide).get_trace(x)
            for n in names:
                out[n].append(tr.nodes[n]["value"].detach())
    return {n: torch.stack(v) for n, v in out.items()}


def run_nuts(
    model: Any,
    x: torch.Tensor,
    names: Sequence[str],
    *,
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample the model's posterior given ``x`` with NUTS; return draws, R-hat, ESS, divergences, seconds.

    ``draws`` are ``{site: (chains, draws, ...)}``; ``max_rhat`` and ``min_ess_bulk`` come from
    ArviZ over every latent element, ``warnings`` from
    :func:`~pyro_gen.inference.mcmc.convergence_warnings`.
    """
    import arviz as az
    from pyro.infer import MCMC, NUTS

    from ..inference.mcmc import convergence_warnings

    chains, divergences = [], 0
    t0 = time.perf_counter()
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        kernel = NUTS(model.model, jit_compile=False)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=not progress)
        mcmc.run(x)
        samples = mcmc.get_samples()
        chains.append({n: samples[n].detach() for n in names})
        divergences += len(mcmc.diagnostics().get("divergences", {}).get("chain 0", []))
    seconds = time.perf_counter() - t0
    draws = {n: torch.stack([c[n] for c in chains]) for n in names}
    posterior = az.convert_to_dataset({n: v.numpy() for n, v in draws.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one chain: R-hat undefined
        rhat = az.rhat(posterior)
        ess = az.ess(posterior, method="bulk")
        max_rhat = float(np.nanmax([np.nanmax(rhat[n].values) for n in names]))
        min_ess = float(np.nanmin([np.nanmin(ess[n].values) for n in names]))
    return {
        "draws": draws,
        "max_rhat": max_rhat,
        "min_ess_bulk": min_ess,
        "divergences": divergences,
        "seconds": seconds,
        "warnings": convergence_warnings(max_rhat, min_ess, divergences, num_chains),
    }


def moment_errors(
    draws: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Return the summary and per-element rows of mean and sd errors of ``draws`` against ``reference``.

    Both map sites to ``(S, ...)`` draws. Per element: ``mean``, ``sd`` of each and
    ``mean_error = (mean - mean_ref) / sd_ref`` (in reference standard deviations) and
    ``sd_ratio = sd / sd_ref``. The summary has ``max_abs_mean_error``,
    ``mean_abs_mean_error`` and ``max_abs_log_sd_ratio`` over every element.
    """
    rows = []
    for name, ref in reference.items():
        ref = ref.reshape(ref.shape[0], -1).double()
        got = draws[name].reshape(draws[name].shape[0], -1).double()
        m_ref, s_ref = ref.mean(0), ref.std(0)
        m, s = got.mean(0), got.std(0)
        for i in range(ref.shape[1]):
            scale = max(float(s_ref[i]), 1e-12)
            rows.append(
                {
                    "site": name,
                    "element": i,
                    "mean": float(m[i]),
                    "sd": float(s[i]),
                    "reference_mean": float(m_ref[i]),
                    "reference_sd": float(s_ref[i]),
                    "mean_error": (float(m[i]) - float(m_ref[i])) / scale,
                    "sd_ratio": float(s[i]) / scale,
                }
            )
    errs = [abs(r["mean_error"]) for r in rows]
    logs = [abs(math.log(max(r["sd_ratio"], 1e-300))) for r in rows]
    return {
        "max_abs_mean_error": max(errs),
        "mean_abs_mean_error": sum(errs) / len(errs),
        "max_abs_log_sd_ratio": max(logs),
    }, rows


def posterior_predictive(model: Any, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> float:
    """Return ``(1/N) sum_n log (1/S) sum_s p(x_n | z_s)`` in nats over posterior draws ``{site: (S, ...)}``.

    The draws are conditioned on; latents inside the data plate are not among them for a
    held-out ``x``, so the per-point terms of the test rows' own latents are drawn from the prior
    (a noisier estimate for such models).
    """
    from ..families.user import per_point_log_weight

    num = next(iter(draws.values())).shape[0]
    rows = []
    with torch.no_grad():
        for s in range(num):
            cond = poutine.condition(model.model, data={n: v[s] for n, v in draws.items()})
            tr = poutine.trace(cond).get_trace(x)
            rows.append(per_point_log_weight(tr, None, int(x.shape[0])))
    lw = torch.stack(rows)
    return float((torch.logsumexp(lw, 0) - math.log(num)).mean())


def _local_names(model: Any, x: torch.Tensor, names: Sequence[str]) -> set[str]:
    trace = poutine.trace(model.model).get_trace(x)
    return {n for n in names if any(f.name == "data" for f in trace.nodes[n]["cond_indep_stack"])}


def compare_inference(
    target: str,
    data: DataSplit,
    *,
    guides: Sequence[str] = USER_GUIDES,
    steps: int = 3000,
    lr: float = 1e-2,
    num_samples: int = 1000,
    nuts_warmup: int = 500,
    nuts_chains: int = 2,
    k: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit each guide by SVI and sample NUTS on the training rows; return the comparison.

    The dict holds ``nuts`` (R-hat, ESS, divergences, seconds, warnings, held-out predictive),
    ``methods`` (one dict per guide: ``name``, ``guide``, ``khat`` and its ``verdict``, the
    :func:`moment_errors` summary, ``test_log_predictive`` in nats per test point,
    ``train_elbo`` in nats per training point, ``seconds`` of training, ``steps``) and
    ``rows`` (per-element moments of every method against NUTS).
    """
    from ..diagnostics.variational import psis_diagnostic
    from ..families.user import UserConfig, build_user_model, predictive_log_likelihood
    from ..inference import elbo_per_point, fit

    for flag, value in (("--steps", steps), ("--num-samples", num_samples), ("--nuts-chains", nuts_chains)):
        if value < 1:
            raise ValueError(f"{flag} must be positive, got {value}")
    if k < 20:
        raise ValueError(f"--k must be at least 20 for a Pareto tail fit, got {k}")
    bad = [g for g in guides if g not in GUIDE_NAMES]
    if bad:
        raise ValueError(f"--guides: unknown guide {bad[0]!r}; choose from {', '.join(GUIDE_NAMES)}")
    x = data.train
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    probe = build_user_model(
        data, UserConfig(target=target, guide="normal" if "own" not in guides else "own")
    )
    names = _latent_names(probe, x)
    local = _local_names(probe, x, names)
    if local:
        raise ValueError(
            f"--model {target}: latent site(s) {', '.join(sorted(local))} lie in the 'data' plate; compare "
            "inference fits automatic guides over global latents only"
        )
    if progress:
        print(
            f"[compare inference] NUTS: {nuts_chains} chains x ({nuts_warmup} warm-up + {num_samples})",
            flush=True,
        )
    nuts = run_nuts(
        probe,
        x,
        names,
        num_samples=num_samples,
        warmup_steps=nuts_warmup,
        num_chains=nuts_chains,
        seed=seed,
        progress=progress,
    )
    reference = {n: v.reshape(-1, *v.shape[2:]) for n, v in nuts["draws"].items()}
    nuts_summary = {
        key: nuts[key] for key in ("max_rhat", "min_ess_bulk", "divergences", "seconds", "warnings")
    }
    nuts_summary["test_log_predictive"] = posterior_predictive(probe, data.test, reference)
    methods, rows = [], []
    for guide in guides:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        model = build_user_model(data, UserConfig(target=target, guide=guide))
        if progress:
            print(f"[compare inference] SVI {GUIDE_NAMES[guide]}: {steps} steps", flush=True)
        res = fit(
            model,
            x,
            estimator="reparam",
            steps=steps,
            batch_size=int(x.shape[0]),
            lr=lr,
            lr_schedule="cosine",
            seed=seed,
            progress=progress,
        )
        model.eval()
        with torch.random.fork_rng():
            pyro.set_rng_seed(seed)
            draws = guide_draws(model, x, names, num_samples)
            summary, elems = moment_errors(draws, reference)
            psis = psis_diagnostic(model, x, num_samples=k)
            test_lp = float(predictive_log_likelihood(model, data.test, min(k, num_samples)).mean())
            train_elbo = elbo_per_point(model.model, model.guide, x, num_particles=10)
        methods.append(
            {
                "name": f"SVI {GUIDE_NAMES[guide]}",
                "guide": guide,
                "khat": float(np.max(psis["khat"])),
                "khat_verdict": psis["verdict"],
                **summary,
                "test_log_predictive": test_lp,
                "train_elbo": train_elbo,
                "seconds": res.seconds,
                "steps": res.steps,
            }
        )
        rows += [{"method": methods[-1]["name"], **r} for r in elems]
    return {"nuts": nuts_summary, "methods": methods, "rows": rows, "latents": names}


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def inference_table(result: dict[str, Any]) -> str:
    """Return the Markdown table of the comparison: one row per method, NUTS last."""
    head = [
        "method",
        "PSIS k-hat",
        "max abs mean err (NUTS sd)",
        "mean abs mean err",
        "max abs log sd ratio",
        "test log pred. (nats/pt)",
        "train ELBO",
        "seconds",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result["methods"]:
        cells = [_fmt(m["khat"], ".2f"), _fmt(m["max_abs_mean_error"]), _fmt(m["mean_abs_mean_error"])]
        cells += [_fmt(m["max_abs_log_sd_ratio"]), _fmt(m["test_log_predictive"]), _fmt(m["train_elbo"])]
        cells.append(_fmt(m["seconds"], ".1f"))
        lines.append("| " + " | ".join([m["name"], *cells]) + " |")
    n = result["nuts"]
    cells = ["-", "0 (reference)", "0", "0", _fmt(n["test_log_predictive"]), "-", _fmt(n["seconds"], ".1f")]
    lines.append("| NUTS | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_inference_report(result: dict[str, Any], out: str | Path, config: dict) -> Path:
    """Write the report, ``inference.csv``, ``comparison.json`` and ``index.html``; return ``report.md``."""
    from ..report import write_comparison_index, write_json
    from ..report.estimators import write_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json({"config": config, **result}, out / "comparison.json")
    with (out / "inference.csv").open("w", newline="") as fh:
        fields = list(result["rows"][0]) if result["rows"] else ["method"]
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(result["rows"])
    n = result["nuts"]
    lines = [
        f"# Inference on `{config['model']}`: SVI guides against NUTS",
        "",
        f"Data `{config['data']}` ({config['train_points']} training rows, "
        f"{config['test_points']} held out); "
        f"SVI: {config['steps']} full-batch steps of Adam (lr {config['lr']}, cosine decay), "
        "reparameterized ELBO, seed "
        f"{config['seed']}; NUTS: {config['nuts_chains']} chains of {config['nuts_warmup']} warm-up and "
        f"{config['num_samples']} draws (max R-hat {n['max_rhat']:.3f}, "
        f"min bulk ESS {n['min_ess_bulk']:.0f}, "
        f"{n['divergences']} divergences). Mean errors are in NUTS posterior standard deviations, "
        f"over {config['num_samples']} guide draws per method; PSIS k-hat from {config['k']} importance "
        "samples (below 0.5 good, 0.5-0.7 usable, above 0.7 the guide is poor: Yao et al. 2018). The "
        "held-out log predictive density is log (1/S) sum_s p(x_n | z_s) per test row.",
        "",
        inference_table(result),
        "",
    ]
    lines += [f"- NUTS: {w}" for w in n["warnings"]]
    lines += [f"- {m['name']}: k-hat {m['khat']:.2f}, {m['khat_verdict']}" for m in result["methods"]]
    lines += ["", "Per latent element: `inference.csv` (mean, sd, NUTS mean and sd, errors)."]
    path = write_markdown("\n".join(lines), out / "report.md")
    write_comparison_index(out)
    return path


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare inference`` from parsed flags; print the table and report path; return 0."""

    from .estimators import user_comparison_data

    data = user_comparison_data(args, "inference")
    guides = split_names(args.guides, "--guides")
    result = compare_inference(
        args.model,
        data,
        guides=guides,
        steps=args.steps,
        lr=args.lr,
        num_samples=args.num_samples,
        nuts_warmup=args.nuts_warmup,
        nuts_chains=args.nuts_chains,
        k=args.k,
        seed=args.seed,
        progress=not args.no_progress,
    )
    config = {
        "model": args.model,
        "data": args.data,
        "guides": guides,
        "steps": args.steps,
        "lr": args.lr,
        "num_samples": args.num_samples,
        "nuts_warmup": args.nuts_warmup,
        "nuts_chains": args.nuts_chains,
        "k": args.k,
        "seed": args.seed,
        "threads": args.threads,
        "train_points": int(data.train.shape[0]),
        "test_points": int(data.test.shape[0]),
    }
    path = write_inference_report(result, args.out, config)
    for w in result["nuts"]["warnings"]:
        print(f"note: NUTS: {w}")
    print(inference_table(result))
    print(f"report: {path}")
    return 0
