"""``pyro-gen compare vae``: which gradient estimator should train this VAE, measured.

Every estimator trains the same VAE from the same initialization, with the same seed,
minibatch order, optimizer and step budget; only the gradient estimator differs. At fixed
checkpoints the gradient variance and SNR of the estimator being trained are measured on a
fixed batch (:func:`~pyro_gen.inference.gradients.gradient_moments`, random state restored
so training is unaffected). The report folder holds ``report.md`` (tables), ``estimators.csv``,
``gradient_variance.csv``, ``comparison.json`` and PNG figures.

``pyro-gen compare discrete`` does the same for the binary-latent VAE of
:mod:`pyro_gen.models.discrete`: exact enumeration vs score function vs relaxation, scored
by the exact ELBO and exact log p(x) (sums over all codes).
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

from ..comparisons import Comparison, register_comparison
from ..data import DataSplit, load_data
from ..inference import elbo_per_point, fit, importance_log_likelihood, make_estimator
from ..inference.gradients import GradientVarianceRecorder
from ..models.vae import VAE
from ..report import write_json
from ..report.estimators import (
    estimator_table,
    plot_elbo_comparison,
    plot_gradient_variance,
    plot_snr,
    variance_table,
    write_estimator_csvs,
)

DEFAULT_ESTIMATORS = "reparam,analytic-kl,score,score-baseline,stl,iwae:5,dreg:5"


def _parse_estimators(spec: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ValueError("--estimators is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"--estimators lists a name twice: {names}")
    for n in names:
        make_estimator(n)  # ValueError naming the bad one
    return names


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """Return ``count`` steps from 0 to ``steps`` (inclusive), evenly spaced, without repeats."""
    if count < 2:
        raise ValueError(f"the number of variance checkpoints must be >= 2, got {count}")
    return sorted({int(round(i * steps / (count - 1))) for i in range(count)})


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

    Each dict: ``name``, ``history`` (fit rows plus ``seconds_train``: wall-clock seconds
    without evaluation and variance measurement), ``variance`` (rows per checkpoint: step and
    per-group ``total_variance``/``snr``/``median_snr``, gradients of the loss in nats per
    data point) and ``final`` (``train_elbo``, ``test_elbo`` in nats per data point with
    ``eval_particles`` particles, ``test_log_likelihood`` by importance sampling with ``k`` samples,
    ``ms_per_step`` (wall clock), ``cpu_ms_per_step`` (this process's CPU time, which a shared
    machine disturbs less; includes the periodic held-out evaluation), and the last
    checkpoint's encoder/decoder variance and SNR).
    """
    from ..inference.svi import resolve_device

    names = _parse_estimators(estimators)
    dev = resolve_device(device) or torch.device("cpu")
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    checkpoints = checkpoint_steps(steps, num_checkpoints)
    eval_every = eval_every or max(1, steps // 20)
    torch.manual_seed(seed)
    base = VAE(data.dim, latent_dim=latent_dim, hidden=list(hidden))
    base.init_output_bias(data.train.mean(0))
    init_state = copy.deepcopy(base.state_dict())
    g = torch.Generator().manual_seed(seed + 1)
    fixed_batch = data.train[torch.randperm(data.train.shape[0], generator=g)[:variance_batch]]
    train_eval = data.train
    if data.batch_transform is not None:
        fixed_batch = torch.bernoulli(fixed_batch, generator=g)
        train_eval = torch.bernoulli(data.train, generator=g)
    fixed_batch, train_eval, test_data = fixed_batch.to(dev), train_eval.to(dev), data.test.to(dev)
    # Warm-up (allocator, kernels, lazy imports) so the first estimator's ms/step is not penalized.
    warm = copy.deepcopy(base)
    fit(
        warm,
        data.train,
        steps=min(20, steps),
        batch_size=batch_size,
        transform=data.batch_transform,
        progress=False,
        device=dev,
    )
    results = []
    for name in names:
        pyro.clear_param_store()
        vae = VAE(data.dim, latent_dim=latent_dim, hidden=list(hidden))
        vae.load_state_dict(init_state)
        vae.to(dev)
        elbo = make_estimator(name)
        recorder = GradientVarianceRecorder(
            vae,
            elbo,
            fixed_batch,
            num_draws=variance_draws,
            at_steps=[s for s in checkpoints if s > 0],
            num_data=data.train.shape[0],
        )
        pyro.set_rng_seed(seed)
        if 0 in checkpoints:
            recorder.record(0)
        if progress:
            print(f"[compare vae] {name}: {steps} steps", flush=True)
        cpu0 = time.process_time()
        res = fit(
            vae,
            data.train,
            estimator=elbo,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            transform=data.batch_transform,
            test_data=test_data,
            eval_every=eval_every,
            log_every=eval_every,
            seed=seed,
            callbacks=[recorder],
            progress=progress,
            device=dev,
        )
        cpu_seconds = time.process_time() - cpu0 - recorder.cpu_seconds
        history = []
        for row in res.history:
            row = dict(row)
            row["seconds_train"] = row["seconds"] - recorder.seconds_until(row["step"])
            history.append(row)
        train_seconds = res.seconds - recorder.seconds
        with torch.no_grad():
            final = {
                "train_elbo": elbo_per_point(vae.model, vae.guide, train_eval, num_particles=eval_particles),
                "test_elbo": elbo_per_point(vae.model, vae.guide, test_data, num_particles=eval_particles),
            }
        ll = importance_log_likelihood(vae, data.test, k=k)
        last = recorder.rows[-1] if recorder.rows else {}
        final.update(
            {
                "test_log_likelihood": ll["log_likelihood"],
                "ms_per_step": 1000.0 * train_seconds / max(1, res.steps),
                "cpu_ms_per_step": 1000.0 * cpu_seconds / max(1, res.steps),
                "train_seconds": train_seconds,
                "encoder_variance": last.get("encoder", {}).get("total_variance"),
                "decoder_variance": last.get("decoder", {}).get("total_variance"),
                "encoder_snr": last.get("encoder", {}).get("snr"),
                "decoder_snr": last.get("decoder", {}).get("snr"),
            }
        )
        results.append({"name": name, "history": history, "variance": recorder.rows, "final": final})
    return results


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
        f"test log p(x) by importance sampling with k={k}; ms/step (wall clock) excludes "
        "evaluation and variance measurement; CPU ms/step is this process's CPU time (robust to other "
        "jobs on the machine, includes the periodic held-out evaluation). Gradient "
        "variance: trace of the covariance of the gradient of the loss (nats per data point) over "
        f"{config['variance_draws']} draws at fixed parameters on a fixed batch of "
        f"{config['variance_batch']}; SNR = ||mean|| / sqrt(total variance). Values at the last "
        "checkpoint in the first table. iwae/dreg train (and report variance of) the k-sample bound.",
        "",
        estimator_table(results, k=k),
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
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _add_common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--data", default="digits", help="digits | mnist:PATH (binary image data)")
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "static", "none"])
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps per estimator (same budget)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=default_out, help="report folder")
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for small nets)"
    )
    p.add_argument("--no-progress", action="store_true")


def _vae_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p, "runs/compare-estimators")
    p.add_argument("--estimators", default=DEFAULT_ESTIMATORS, help="comma-separated estimator names")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", default="256", help="encoder widths, comma-separated")
    p.add_argument("--checkpoints", type=int, default=5, help="variance checkpoints from step 0 to the end")
    p.add_argument("--variance-draws", type=int, default=30, help="gradient draws per checkpoint")
    p.add_argument("--k", type=int, default=1000, help="importance samples for the test log p(x)")
    p.add_argument("--device", default=None, help="where the VAEs train: cpu | cuda | cuda:N | auto")
    p.add_argument(
        "--eval-every", type=int, default=None, help="held-out ELBO every N steps (default steps/20)"
    )
    p.add_argument("--eval-particles", type=int, default=100, help="particles for the final ELBOs")


def _load(args) -> DataSplit:
    binarize = None if args.binarize == "none" else args.binarize
    data = load_data(args.data, binarize=binarize, seed=args.seed)
    if not data.is_image:
        raise ValueError(f"compare vae needs binary image data (digits, mnist), got {args.data!r}")
    return data


def _run_vae(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    data = _load(args)
    names = _parse_estimators(args.estimators)
    hidden = [int(h) for h in str(args.hidden).split(",") if h]
    t0 = time.perf_counter()
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
        "total_seconds": time.perf_counter() - t0,
    }
    path = write_report(results, args.out, config, args.k)
    print(estimator_table(results, k=args.k))
    print(f"report: {path}")
    return 0


# ------------------------------------------------------------------ discrete latents
DISCRETE_METHODS = {
    "enum": ("enum", "guide_enumerated"),
    "score-baseline": ("score-baseline", "guide"),
    "score-nn": ("score-nn", "guide"),
    "score-loo": ("score-loo:4", "guide"),
    "score": ("score", "guide"),
    "relaxed": ("analytic-kl", "guide_relaxed"),
}


def compare_discrete(
    data: DataSplit,
    methods: Sequence[str] = ("enum", "score-baseline", "score-loo", "relaxed"),
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
    ``final`` holds the exact train/test ELBO and exact test log p(x) (nats per data point)
    and ms per step (wall clock and this process's CPU time).
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
        cpu0 = time.process_time()
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
        cpu_seconds = time.process_time() - cpu0
        history = [dict(r) for r in res.history]
        final = {
            "train_exact_elbo": float(vae.exact_elbo(train_eval).mean()),
            "test_exact_elbo": float(vae.exact_elbo(data.test).mean()),
            "test_log_likelihood": float(vae.exact_log_likelihood(data.test).mean()),
            "ms_per_step": 1000.0 * res.seconds / max(1, res.steps),
            "cpu_ms_per_step": 1000.0 * cpu_seconds / max(1, res.steps),
        }
        results.append({"name": method, "estimator": estimator, "history": history, "final": final})
    return results


def _discrete_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p, "runs/compare-discrete")
    p.add_argument(
        "--methods",
        default="enum,score-baseline,score-loo,relaxed",
        help=f"comma-separated: {', '.join(DISCRETE_METHODS)}",
    )
    p.add_argument("--num-latents", type=int, default=8, help="binary latents (2^L codes are enumerated)")
    p.add_argument("--hidden", default="128")
    p.add_argument("--temperature", type=float, default=0.5, help="relaxation temperature")


def _run_discrete(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    from ..report.figures import _save

    torch.set_num_threads(max(1, args.threads))
    data = _load(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json({"config": vars(args) | {"hidden": hidden}, "results": results}, out / "comparison.json")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for res in results:
        ax.plot(
            [r["step"] for r in res["history"]], [r["train_elbo"] for r in res["history"]], label=res["name"]
        )
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("training objective (nats per data point)")
    ax.set_title(f"Binary-latent VAE, L={args.num_latents}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out / "objective_vs_steps.png")
    head = (
        "| method | estimator | train exact ELBO | test exact ELBO | test exact log p(x) | ms/step "
        "| CPU ms/step |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in results:
        f = r["final"]
        lines.append(
            f"| {r['name']} | {r['estimator']} | {f['train_exact_elbo']:.2f} | {f['test_exact_elbo']:.2f} | "
            f"{f['test_log_likelihood']:.2f} | {f['ms_per_step']:.2f} | {f['cpu_ms_per_step']:.2f} |"
        )
    table = "\n".join(lines)
    (out / "report.md").write_text(
        f"# Binary-latent VAE: enumeration vs score function vs relaxation\n\n"
        f"Data `{args.data}`, {args.steps} steps, L={args.num_latents} binary latents; exact values sum "
        f"over all 2^L codes (nats per data point).\n\n{table}\n\n![objective](objective_vs_steps.png)\n"
    )
    print(table)
    print(f"report: {out / 'report.md'}")
    return 0


register_comparison(
    Comparison(
        name="vae",
        summary="gradient estimators on a VAE: ELBO, log p(x), speed, gradient variance and SNR",
        add_arguments=_vae_arguments,
        run=_run_vae,
    )
)
register_comparison(
    Comparison(
        name="discrete",
        summary="binary-latent VAE: enumeration vs score function vs relaxation (exact log p(x))",
        add_arguments=_discrete_arguments,
        run=_run_discrete,
    )
)
