"""``pyro-gen compare discrete``: enumeration vs score function vs relaxation on binary latents.

The binary-latent VAE of :mod:`pyro_gen.models.discrete` is trained once per method from the
same initialization, and scored by the exact ELBO and the exact log p(x) (sums over all 2^L
codes). Costs come from each run's :class:`~pyro_gen.inference.FitResult`.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from ..data import DataSplit
from ..inference import fit
from ..report import write_comparison_index, write_json
from ..report.estimators import cost_table, discrete_table, plot_curves, timing_note, write_markdown
from .arguments import DEFAULT_DISCRETE_METHODS, DISCRETE_METHODS, split_names
from .costs import fit_costs
from .vae import load_binary_images, set_threads


def compare_discrete(
    data: DataSplit,
    methods: Sequence[str] = DEFAULT_DISCRETE_METHODS,
    *,
    num_latents: int = 8,
    hidden: Sequence[int] = (128,),
    temperature: float = 0.5,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train the binary-latent VAE once per method (same start); return per-method results.

    Methods: ``enum`` (exact enumeration of the guide), ``score``/``score-baseline``/
    ``score-nn``/``score-loo`` (score function), ``relaxed`` (straight-through relaxation).
    Each dict has ``name``, ``estimator``, ``history`` (the fit's rows; ``seconds`` is
    cumulative training wall time), ``final`` (exact train/test ELBO and exact test log p(x),
    nats per data point) and ``costs`` (:func:`~pyro_gen.experiments.costs.fit_costs` plus
    ``final_eval_seconds``, the wall seconds of the exact scores).
    """
    from ..models.discrete import DiscreteVAE

    bad = [m for m in methods if m not in DISCRETE_METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {sorted(DISCRETE_METHODS)}")
    torch.manual_seed(seed)
    base = DiscreteVAE(data.dim, num_latents=num_latents, hidden=list(hidden), temperature=temperature)
    base.init_output_bias(data.train.mean(0))
    init_state = copy.deepcopy(base.state_dict())
    g = torch.Generator().manual_seed(seed + 1)
    train_eval = data.train if data.batch_transform is None else torch.bernoulli(data.train, generator=g)
    results = []
    for method in methods:
        estimator, guide_name = DISCRETE_METHODS[method]
        pyro.clear_param_store()
        vae = DiscreteVAE(data.dim, num_latents=num_latents, hidden=list(hidden), temperature=temperature)
        vae.load_state_dict(init_state)
        if progress:
            print(f"[compare discrete] {method}: {steps} steps", flush=True)
        res = fit(
            vae,
            data.train,
            guide=getattr(vae, guide_name),
            estimator=estimator,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            transform=data.batch_transform,
            log_every=max(1, steps // 20),
            seed=seed,
            progress=progress,
        )
        t0 = time.perf_counter()
        final = {
            "train_exact_elbo": float(vae.exact_elbo(train_eval).mean()),
            "test_exact_elbo": float(vae.exact_elbo(data.test).mean()),
            "test_log_likelihood": float(vae.exact_log_likelihood(data.test).mean()),
        }
        costs = fit_costs(res)
        costs["final_eval_seconds"] = time.perf_counter() - t0
        results.append(
            {
                "name": method,
                "estimator": estimator,
                "history": [dict(r) for r in res.history],
                "final": final,
                "costs": costs,
            }
        )
    return results


def write_report(results: list[dict], out: str | Path, config: dict) -> Path:
    """Write ``comparison.json``, the objective figures and ``report.md`` into ``out``; return its path."""
    out = Path(out)
    write_json({"config": config, "results": results}, out / "comparison.json")
    title = f"Binary-latent VAE, L={config['num_latents']}"
    ylabel = "training objective (nats/point)"
    figs = [
        plot_curves(results, out / f"objective_vs_{n}.png", y="train_elbo", x=x, ylabel=ylabel, title=title)
        for x, n in (("step", "steps"), ("seconds", "seconds"))
    ]
    text = "\n".join(
        [
            "# Binary-latent VAE: enumeration vs score function vs relaxation",
            "",
            f"Data `{config['data']}`, {config['steps']} steps, L={config['num_latents']} binary latents; "
            "exact values sum over all 2^L codes (nats per data point).",
            "",
            discrete_table(results),
            "",
            "## Costs",
            "",
            cost_table(results),
            "",
            timing_note(results),
            "",
        ]
        + [f"![{p.stem}]({p.name})" for p in figs]
    )
    path = write_markdown(text, out / "report.md")
    write_comparison_index(out)
    return path


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare discrete`` from parsed flags; print the table and the report path; return 0."""
    set_threads(args.threads)
    data = load_binary_images(args, "discrete")
    methods = split_names(args.methods, "--methods")
    hidden = [int(h) for h in str(args.hidden).split(",") if h]
    results = compare_discrete(
        data,
        methods,
        num_latents=args.num_latents,
        hidden=hidden,
        temperature=args.temperature,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
    )
    config = {k: v for k, v in vars(args).items() if k not in ("command", "target", "debug")}
    config["hidden"] = hidden
    path = write_report(results, args.out, config)
    print(discrete_table(results))
    print(f"report: {path}")
    return 0
