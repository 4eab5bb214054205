"""``pyro-gen compare vae``: which gradient estimator should train this VAE, measured.

Every estimator trains the same VAE from the same initialization, with the same seed,
minibatch order, optimizer and step budget; only the gradient estimator differs. The
machinery is :func:`~pyro_gen.experiments.estimators.train_estimators`, shared with
``compare estimators`` (any model/guide pair): at fixed checkpoints the gradient variance and
SNR of the estimator being trained are measured on a fixed batch
(:class:`~pyro_gen.inference.GradientVarianceRecorder`, a ``fit`` callback whose time the
trainer books as evaluation, and whose random state is restored so training is unaffected).
Costs come from each run's :class:`~pyro_gen.inference.FitResult`
(:func:`~pyro_gen.experiments.costs.fit_costs`). The report folder holds ``report.md``
(tables), ``estimators.csv``, ``gradient_variance.csv``, ``comparison.json`` and PNG figures.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import DataSplit, load_data
from ..evaluation.likelihood import importance_log_likelihood
from ..inference import elbo_per_point
from ..inference.engine import resolve_device
from ..models.vae import VAE
from ..report import write_comparison_index, write_json
from ..report.estimators import (
    cost_table,
    estimator_table,
    plot_elbo_comparison,
    plot_gradient_variance,
    plot_snr,
    timing_note,
    variance_table,
    write_estimator_csvs,
    write_markdown,
)
from .arguments import DEFAULT_ESTIMATORS
from .estimators import checkpoint_steps, parse_estimators, train_estimators

__all__ = [
    "DEFAULT_ESTIMATORS",
    "checkpoint_steps",
    "compare_estimators",
    "load_binary_images",
    "parse_estimators",
    "run",
    "set_threads",
    "write_report",
]


def compare_estimators(
    data: DataSplit,
    estimators: Sequence[str],
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    latent_dim: int = 16,
    hidden: Sequence[int] = (256,),
    seed: int = 0,
    num_checkpoints: int = 5,
    variance_draws: int = 30,
    variance_batch: int = 128,
    eval_every: int | None = None,
    eval_particles: int = 100,
    k: int = 1000,
    progress: bool = True,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Train one VAE per estimator from the same start; return one result dict per estimator.

    ``device`` (``cpu``, ``cuda``, ``auto``): where every VAE trains and is measured.

    Each dict: ``name``; ``history`` (the fit's rows: ``seconds`` is cumulative training wall
    time, evaluation and variance measurement excluded); ``variance`` (rows per checkpoint:
    step and per-group ``total_variance``/``snr``/``median_snr``, gradients of the loss in
    nats per data point); ``final`` (``train_elbo``, ``test_elbo`` in nats per data point with
    ``eval_particles`` particles, ``test_log_likelihood`` by importance sampling with ``k``
    samples, and the last checkpoint's encoder/decoder variance and SNR); ``costs``
    (:func:`~pyro_gen.experiments.costs.fit_costs` plus ``final_eval_seconds``: wall seconds
    of the step-0 variance measurement and the final scores).
    """
    names = parse_estimators(estimators)
    resolve_device(device)  # an unknown device is refused before anything is built
    torch.manual_seed(seed)
    base = VAE(data.dim, latent_dim=latent_dim, hidden=list(hidden))
    base.init_output_bias(data.train.mean(0))
    init_state = copy.deepcopy(base.state_dict())

    def build() -> VAE:
        vae = VAE(data.dim, latent_dim=latent_dim, hidden=list(hidden))
        vae.load_state_dict(init_state)
        return vae

    def score(vae: VAE, train_eval: torch.Tensor, test_data: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            final = {
                "train_elbo": elbo_per_point(vae.model, vae.guide, train_eval, num_particles=eval_particles),
                "test_elbo": elbo_per_point(vae.model, vae.guide, test_data, num_particles=eval_particles),
            }
        final["test_log_likelihood"] = importance_log_likelihood(vae, data.test, k=k)["log_likelihood"]
        return final

    return train_estimators(
        build,
        data,
        names,
        score,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        num_checkpoints=num_checkpoints,
        variance_draws=variance_draws,
        variance_batch=variance_batch,
        eval_every=eval_every,
        progress=progress,
        device=device,
        label="compare vae",
    )


def write_report(results: list[dict], out: str | Path, config: dict, k: int) -> Path:
    """Write the comparison's tables, CSV, JSON and figures into ``out``; return ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_estimator_csvs(results, out)
    write_json({"config": config, "results": results}, out / "comparison.json")
    figs = [
        plot_elbo_comparison(results, out / "elbo_vs_steps.png", x="step"),
        plot_elbo_comparison(results, out / "elbo_vs_seconds.png", x="seconds"),
        plot_gradient_variance(results, out / "gradient_variance.png"),
        plot_snr(results, out / "gradient_snr.png"),
    ]
    lines = [
        "# Gradient estimators on the VAE",
        "",
        f"Data `{config['data']}`, {config['steps']} steps of Adam (lr {config['lr']}), batch "
        f"{config['batch_size']}, latent dim {config['latent_dim']}, hidden {config['hidden']}, seed "
        f"{config['seed']}; every estimator starts from the same initialization and sees the same "
        f"minibatches. ELBOs in nats per data point ({config['eval_particles']} particles); "
        f"test log p(x) by importance sampling with k={k}. Gradient "
        "variance: trace of the covariance of the gradient of the loss (nats per data point) over "
        f"{config['variance_draws']} draws at fixed parameters on a fixed batch of "
        f"{config['variance_batch']}; SNR = ||mean|| / sqrt(total variance). Values at the last "
        "checkpoint in the first table. iwae/dreg train (and report variance of) the k-sample bound.",
        "",
        estimator_table(results, k=k),
        "",
        "## Costs",
        "",
        cost_table(results, "estimator"),
        "",
        timing_note(results),
        "",
        "## Encoder gradient variance at checkpoints",
        "",
        variance_table(results, "encoder"),
        "",
        "## Decoder gradient variance at checkpoints",
        "",
        variance_table(results, "decoder"),
        "",
        "## Encoder gradient SNR at checkpoints",
        "",
        variance_table(results, "encoder", "snr"),
        "",
        "## Decoder gradient SNR at checkpoints",
        "",
        variance_table(results, "decoder", "snr"),
        "",
        "## Figures",
        "",
    ] + [f"![{p.stem}]({p.name})" for p in figs]
    path = write_markdown("\n".join(lines), out / "report.md")
    write_comparison_index(out)
    return path


def load_binary_images(args: argparse.Namespace, target: str = "vae") -> DataSplit:
    """Return the data set of ``args.data`` with ``args.binarize``; ``ValueError`` unless it is image data."""
    binarize = None if args.binarize == "none" else args.binarize
    data = load_data(args.data, binarize=binarize, seed=args.seed)
    if not data.is_image:
        raise ValueError(f"compare {target} needs binary image data (digits, mnist), got {args.data!r}")
    return data


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads to ``threads`` (>= 1, else ``ValueError``); return it."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare vae`` from parsed flags; print the table and the report path; return 0."""
    set_threads(args.threads)
    data = load_binary_images(args)
    names = parse_estimators(args.estimators)
    hidden = [int(h) for h in str(args.hidden).split(",") if h]
    results = compare_estimators(
        data,
        names,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        latent_dim=args.latent_dim,
        hidden=hidden,
        seed=args.seed,
        num_checkpoints=args.checkpoints,
        variance_draws=args.variance_draws,
        eval_every=args.eval_every,
        eval_particles=args.eval_particles,
        k=args.k,
        progress=not args.no_progress,
        device=args.device,
    )
    config = {
        "data": args.data,
        "binarize": args.binarize,
        "estimators": names,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "latent_dim": args.latent_dim,
        "hidden": hidden,
        "seed": args.seed,
        "variance_draws": args.variance_draws,
        "variance_batch": 128,
        "eval_particles": args.eval_particles,
        "threads": args.threads,
    }
    path = write_report(results, args.out, config, args.k)
    print(estimator_table(results, k=args.k))
    print(f"report: {path}")
    return 0
