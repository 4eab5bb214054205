"""``pyro-gen compare estimators --model FILE.py:NAME``: which gradient estimator trains your program.

:func:`train_estimators` is the machinery ``compare vae`` and ``compare estimators`` share:
every estimator trains a model built from the same initialization, with the same seed,
minibatch order, optimizer and step budget; only the gradient estimator differs. At fixed
checkpoints the gradient variance and SNR per parameter group are measured on a fixed batch
(:class:`~pyro_gen.inference.GradientVarianceRecorder`, whose time the trainer books as
evaluation and whose random state is restored, so training is unaffected); costs come from
each run's :class:`~pyro_gen.inference.FitResult`.

For a user's program (:mod:`pyro_gen.families.user`) the parameter groups are ``guide`` (the
parameters the guide's draws depend on) and ``model`` (the others); the held-out score is the
family's :func:`~pyro_gen.families.user.predictive_log_likelihood` with ``k`` draws. The
report folder holds ``report.md``, ``estimators.csv``, ``gradient_variance.csv``,
``comparison.json`` and the figures (ELBO against steps and seconds, variance, SNR).
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyro
import pyro.poutine as poutine
import torch

from ..data import DataSplit
from ..inference import GradientVarianceRecorder, elbo_per_point, fit, make_estimator
from ..inference.engine import resolve_device
from .arguments import USER_ESTIMATORS, require_model
from .costs import fit_costs

GROUPS = ("guide", "model")
DEFAULT_USER_ESTIMATORS = USER_ESTIMATORS


def parse_estimators(spec: str | Sequence[str]) -> list[str]:
    """Return the estimator names of a comma-separated ``spec`` (or a list), each checked to exist.

    Raises ``ValueError`` for an empty list, a repeated name or an unknown estimator.
    """
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


def train_estimators(
    build: Callable[[], Any],
    data: DataSplit,
    names: Sequence[str],
    score: Callable[[Any, torch.Tensor, torch.Tensor], dict[str, float]],
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    num_checkpoints: int = 5,
    variance_draws: int = 30,
    variance_batch: int = 128,
    eval_every: int | None = None,
    groups: Any = "module",
    group_names: Sequence[str] = ("encoder", "decoder"),
    progress: bool = True,
    device: str | None = None,
    label: str = "compare",
    warmup_estimator: str = "auto",
) -> list[dict[str, Any]]:
    """Train one model per estimator from the same start; return one result dict per estimator.

    ``build()`` returns a fresh model at the shared initialization (it is called once per
    estimator, after Pyro's param store is cleared, and once for a warm-up). ``score(model,
    train_eval, test)`` returns the final numbers (nats per data point). ``groups`` is the
    grouping of :func:`~pyro_gen.inference.gradients.gradient_moments`; ``group_names`` the
    groups whose last-checkpoint variance and SNR go into ``final`` as ``<group>_variance``
    and ``<group>_snr``. ``warmup_estimator`` trains the short warm-up run.

    Each dict: ``name``; ``history`` (the fit's rows: ``seconds`` is cumulative training wall
    time, evaluation and variance measurement excluded); ``variance`` (rows per checkpoint:
    step and per-group ``total_variance``/``snr``/``median_snr`` of the gradient of the loss
    in nats per data point); ``final``; ``costs`` (:func:`~pyro_gen.experiments.costs.fit_costs`
    plus ``final_eval_seconds``: wall seconds of the step-0 variance measurement and the
    final scores).
    """
    dev = resolve_device(device) or torch.device("cpu")
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    checkpoints = checkpoint_steps(steps, num_checkpoints)
    eval_every = eval_every or max(1, steps // 20)
    g = torch.Generator().manual_seed(seed + 1)
    fixed_batch = data.train[torch.randperm(data.train.shape[0], generator=g)[:variance_batch]]
    train_eval = data.train
    if data.batch_transform is not None:
        fixed_batch = torch.bernoulli(fixed_batch, generator=g)
        train_eval = torch.bernoulli(data.train, generator=g)
    fixed_batch, train_eval, test_data = fixed_batch.to(dev), train_eval.to(dev), data.test.to(dev)
    # Warm-up (allocator, kernels, lazy imports) so the first estimator's ms/step is not penalized.
    pyro.clear_param_store()
    fit(
        build(),
        data.train,
        estimator=warmup_estimator,
        steps=min(20, steps),
        batch_size=batch_size,
        transform=data.batch_transform,
        progress=False,
        device=dev,
    )
    results = []
    for name in names:
        pyro.clear_param_store()
        model = build()
        if isinstance(model, torch.nn.Module):
            model.to(dev)
        elbo = make_estimator(name)
        recorder = GradientVarianceRecorder(
            model,
            elbo,
            fixed_batch,
            num_draws=variance_draws,
            at_steps=[s for s in checkpoints if s > 0],
            groups=groups,
            num_data=data.train.shape[0],
        )
        pyro.set_rng_seed(seed)
        t_before = time.perf_counter()
        if 0 in checkpoints:
            recorder.record(0)
        before_seconds = time.perf_counter() - t_before
        if progress:
            print(f"[{label}] {name}: {steps} steps", flush=True)
        res = fit(
            model,
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
        t_final = time.perf_counter()
        final = dict(score(model, train_eval, test_data))
        costs = fit_costs(res)
        costs["final_eval_seconds"] = before_seconds + time.perf_counter() - t_final
        last = recorder.rows[-1] if recorder.rows else {}
        for group in group_names:
            final[f"{group}_variance"] = last.get(group, {}).get("total_variance")
            final[f"{group}_snr"] = last.get(group, {}).get("snr")
        results.append(
            {
                "name": name,
                "history": [dict(r) for r in res.history],
                "variance": recorder.rows,
                "final": final,
                "costs": costs,
            }
        )
    return results


def guide_parameter_groups(model: Any, x: torch.Tensor) -> Callable[[str], str]:
    """Return ``name -> "guide" | "model"`` for the parameters of a model/guide pair on ``x``.

    A parameter is the guide's when the guide's draws or log-densities depend on it (found by
    differentiating one guide trace), else the model's. Names are those of
    :func:`~pyro_gen.inference.gradients.gradient_moments`: module parameters by dotted path,
    ``pyro.param`` sites by name.
    """
    named: dict[str, torch.Tensor] = {}
    if isinstance(model, torch.nn.Module):
        named.update({n: p for n, p in model.named_parameters() if p.requires_grad})
    with torch.random.fork_rng(), poutine.trace(param_only=True) as ptr:
        gtr = poutine.trace(model.guide).get_trace(x)
        poutine.replay(model.model, trace=gtr)(x)
    for name in ptr.trace.nodes:
        u = ptr.trace.nodes[name]["value"].unconstrained()
        if u.requires_grad:
            named.setdefault(name.split("$$$")[-1], u)
    total = torch.zeros(())
    for site in gtr.nodes.values():
        if site["type"] == "sample" and not site["is_observed"]:
            total = total + site["fn"].log_prob(site["value"]).sum()
            if site["value"].requires_grad:
                total = total + site["value"].float().sum()
    params = list(named.values())
    grads = (
        torch.autograd.grad(total, params, allow_unused=True) if total.requires_grad else [None] * len(params)
    )
    guide = {n for n, gr in zip(named, grads) if gr is not None}
    return lambda name: "guide" if name in guide else "model"


def user_scores(k: int, eval_particles: int) -> Callable[[Any, torch.Tensor, torch.Tensor], dict[str, float]]:
    """Return ``score(model, train, test)``: ELBOs with ``eval_particles`` particles and the held-out
    log-likelihood with ``k`` guide draws, in nats per data point."""
    from ..families.user import predictive_log_likelihood

    def score(model: Any, train: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            out = {
                "train_elbo": elbo_per_point(model.model, model.guide, train, num_particles=eval_particles),
                "test_elbo": elbo_per_point(model.model, model.guide, test, num_particles=eval_particles),
            }
        out["test_log_likelihood"] = float(predictive_log_likelihood(model, test, k).mean())
        return out

    return score


def usable_estimators(model: Any, x: torch.Tensor, names: Sequence[str]) -> dict[str, str]:
    """Return ``{name: reason}`` for the estimators among ``names`` that refuse the pair on ``x``."""
    refused = {}
    for name in names:
        elbo = make_estimator(name)
        try:
            with torch.random.fork_rng(), poutine.block():
                if callable(getattr(elbo, "differentiable_loss", None)):
                    elbo.differentiable_loss(model.model, model.guide, x)
                else:
                    elbo.loss(model.model, model.guide, x)
        except (ValueError, NotImplementedError, RuntimeError) as e:
            refused[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return refused


def build_user(target: str, data: DataSplit, guide: str = "own", seed: int = 0) -> Callable[[], Any]:
    """Return ``build()``: the user's program at one shared initialization (modules and param store)."""
    from ..families.user import UserConfig, build_user_model

    cfg = UserConfig(target=target, guide=guide)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    base = build_user_model(data, cfg)
    init_modules = copy.deepcopy(base.state_dict())
    init_store = copy.deepcopy(pyro.get_param_store().get_state())

    def build() -> Any:
        pyro.get_param_store().set_state(copy.deepcopy(init_store))
        model = build_user_model(data, cfg)
        model.load_state_dict(init_modules)
        return model

    return build


def compare_user_estimators(
    target: str,
    data: DataSplit,
    estimators: Sequence[str] | str = DEFAULT_USER_ESTIMATORS,
    *,
    guide: str = "own",
    strict: bool = True,
    k: int = 1000,
    eval_particles: int = 10,
    **options: Any,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Train the user's program once per estimator (:func:`train_estimators`); return ``(results, refused)``.

    ``refused`` maps the estimators that cannot run on the program to the reason; with
    ``strict`` (estimators the user named) the first refusal raises ``ValueError`` instead.
    ``options`` are :func:`train_estimators` settings (steps, batch size, checkpoints, ...).
    """
    names = parse_estimators(estimators)
    build = build_user(target, data, guide, options.get("seed", 0))
    probe = build()
    x = data.train[: min(int(data.train.shape[0]), int(options.get("batch_size", 128)))]
    refused = usable_estimators(probe, x, names)
    if refused and strict:
        name, why = next(iter(refused.items()))
        raise ValueError(f"--estimators {name}: it cannot train {target} ({why})")
    names = [n for n in names if n not in refused]
    if not names:
        raise ValueError(f"no estimator of --estimators can train {target}: {refused}")
    groups = guide_parameter_groups(probe, x)
    results = train_estimators(
        build,
        data,
        names,
        user_scores(k, eval_particles),
        groups=groups,
        group_names=GROUPS,
        label="compare estimators",
        warmup_estimator="reparam",
        **options,
    )
    return results, refused


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def user_estimator_table(results: Sequence[dict], k: int) -> str:
    """Return a Markdown table of the final metrics (nats per data point), guide/model variance and SNR."""
    head = [
        "estimator",
        "train ELBO",
        "test ELBO",
        f"test log p(x) (IS, k={k})",
        "guide grad var",
        "model grad var",
        "guide SNR",
        "model SNR",
        "ms/step",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        f, c = r["final"], r.get("costs", {})
        cells = [_fmt(f.get(key), ".2f") for key in ("train_elbo", "test_elbo", "test_log_likelihood")]
        cells += [_fmt(f.get(key)) for key in ("guide_variance", "model_variance", "guide_snr", "model_snr")]
        cells.append(_fmt(c.get("ms_per_step"), ".2f"))
        lines.append("| " + " | ".join([r["name"], *cells]) + " |")
    return "\n".join(lines)


def write_user_report(results: list[dict], refused: dict[str, str], out: str | Path, config: dict) -> Path:
    """Write tables, CSVs, JSON, figures and ``index.html`` into ``out``; return ``report.md``."""
    from ..report import write_comparison_index, write_json
    from ..report.estimators import (
        cost_table,
        plot_elbo_comparison,
        plot_gradient_variance,
        plot_snr,
        timing_note,
        variance_table,
        write_estimator_csvs,
        write_markdown,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_estimator_csvs(results, out)
    write_json({"config": config, "results": results, "refused": refused}, out / "comparison.json")
    # a program whose model has no parameters of its own has only the guide group
    groups = [g for g in GROUPS if any(g in row for r in results for row in r["variance"])] or list(GROUPS)
    figs = [
        plot_elbo_comparison(results, out / "elbo_vs_steps.png", x="step"),
        plot_elbo_comparison(results, out / "elbo_vs_seconds.png", x="seconds"),
        plot_gradient_variance(results, out / "gradient_variance.png", groups=groups),
        plot_snr(results, out / "gradient_snr.png", groups=groups),
    ]
    k = config["k"]
    lines = [
        f"# Gradient estimators on `{config['model']}`",
        "",
        f"Data `{config['data']}`, {config['steps']} steps of Adam (lr {config['lr']}), batch "
        f"{config['batch_size']}, guide {config['guide']}, seed {config['seed']}; every estimator starts "
        "from the same initialization and sees the same minibatches. ELBOs in nats per data point "
        f"({config['eval_particles']} particles); test log p(x): importance sampling with k={k} guide "
        "draws (per-point latents weighted, global latents drawn from the guide). Gradient variance: "
        "trace of the covariance of the gradient of the loss (nats per data point) over "
        f"{config['variance_draws']} draws at fixed parameters on a fixed batch of "
        f"{config['variance_batch']}; SNR = ||mean|| / sqrt(total variance); groups: guide (the "
        "parameters the guide's draws depend on) and model (the others).",
        "",
        user_estimator_table(results, k),
        "",
    ]
    if refused:
        lines += ["Estimators left out (they cannot train this program):", ""]
        lines += [f"- `{n}`: {why}" for n, why in refused.items()] + [""]
    lines += ["## Costs", "", cost_table(results, "estimator"), "", timing_note(results), ""]
    for group in groups:
        for field, title in (("total_variance", "gradient variance"), ("snr", "gradient SNR")):
            lines += [
                f"## {group.capitalize()} {title} at checkpoints",
                "",
                variance_table(results, group, field),
                "",
            ]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs]
    path = write_markdown("\n".join(lines), out / "report.md")
    write_comparison_index(out)
    return path


def user_comparison_data(args: argparse.Namespace, target: str) -> DataSplit:
    """Check ``--model`` and ``--threads`` of ``pyro-gen compare TARGET``, set the torch threads,
    quiet Pyro's plate-nesting notes and return the ``--data`` split (binarized as asked)."""
    from ..data import load_data

    require_model(args, target)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    logging.getLogger("pyro").setLevel(logging.WARNING)  # Pyro's "Guessed max_plate_nesting" lines
    binarize = None if args.binarize == "none" else args.binarize
    return load_data(args.data, binarize=binarize, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare estimators`` from parsed flags; print the table and report path; return 0."""

    data = user_comparison_data(args, "estimators")
    strict = args.estimators is not None
    spec = args.estimators if strict else DEFAULT_USER_ESTIMATORS
    results, refused = compare_user_estimators(
        args.model,
        data,
        spec,
        guide=args.guide,
        strict=strict,
        k=args.k,
        eval_particles=args.eval_particles,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        num_checkpoints=args.checkpoints,
        variance_draws=args.variance_draws,
        eval_every=args.eval_every,
        progress=not args.no_progress,
        device=args.device,
    )
    config = {
        "model": args.model,
        "data": args.data,
        "binarize": args.binarize,
        "guide": args.guide,
        "estimators": [r["name"] for r in results],
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "variance_draws": args.variance_draws,
        "variance_batch": 128,
        "eval_particles": args.eval_particles,
        "k": args.k,
        "threads": args.threads,
    }
    path = write_user_report(results, refused, args.out, config)
    for name, why in refused.items():
        print(f"note: {name} left out: {why}")
    print(user_estimator_table(results, args.k))
    print(f"report: {path}")
    return 0
