"""``pyro-gen compare collapse``: which posterior-collapse remedy keeps latent units alive, at what cost.

One VAE with a strong decoder (:class:`~pyro_gen.models.strong_decoder.StrongDecoderVAE`: a
MADE conditioned on z, on binarized images), where plain ELBO training lets most latent
dimensions collapse onto the prior, is trained once per remedy from the same initialization,
with the same seed, minibatch order, optimizer and budget; only the SVI objective's remedy
(:class:`~pyro_gen.config.SVIConfig`) differs. On the first ``eval_points`` test images each
run reports

* active units: Burda et al.'s (2016) A_u = Cov_x(E_q[z_u | x]) > 0.01
  (:func:`~pyro_gen.diagnostics.variational.active_units`);
* KL(q(z_u | x) || p(z_u)) per dimension, closed form (figure; total in the table);
* the mutual information I(x; z) of q(x, z) = p_data(x) q(z | x), He et al.'s (2019)
  estimator (:func:`~pyro_gen.inference.annealing.mutual_information`, at most log N);
* the unweighted test ELBO and the importance-sampled log p(x) with ``k`` samples, their
  difference from the plain run (the cost in nats), and training seconds.

The report folder holds ``report.md``, ``collapse.csv``, ``comparison.json`` and figures:
``kl_per_dim_<remedy>.png``, ``test_elbo.png``, ``train_kl.png`` and ``kl_weight.png``
against steps. This module imports only the standard library at import time, so the command
line builds its flags without torch.
"""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_REMEDIES = "plain,beta:0.5,warmup,cyclical:4,free-bits:0.5,aggressive"
REMEDY_FORMS = (
    "plain",
    "beta:B",
    "warmup[:STEPS]",
    "cyclical[:CYCLES]",
    "free-bits:NATS",
    "aggressive[:INNER]",
)
TABLE_COLUMNS = (
    "remedy",
    "active_units",
    "kl",
    "mutual_information",
    "test_elbo",
    "log_likelihood",
    "delta_log_likelihood",
    "train_seconds",
)


def collapse_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags of ``pyro-gen compare collapse`` to ``p`` (imports no torch)."""
    p.add_argument("--data", default="digits", help="digits | mnist:PATH (binarized image data)")
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "static"])
    p.add_argument(
        "--remedies",
        default=DEFAULT_REMEDIES,
        help="comma-separated remedies, each one of " + ", ".join(REMEDY_FORMS) + " or several joined "
        "by '+' (free-bits:0.5+warmup:500); warmup alone ramps over a third of the steps",
    )
    p.add_argument("--epochs", type=float, default=200.0, help="passes over the training data per remedy")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", default="256", help="encoder widths, comma-separated")
    p.add_argument(
        "--decoder-hidden", default="256", help="the MADE decoder's hidden widths, comma-separated"
    )
    p.add_argument("--k", type=int, default=1000, help="importance samples for the test log p(x)")
    p.add_argument(
        "--eval-points", type=int, default=1000, help="test images evaluated (the first N; default 1000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/compare-collapse", help="report folder")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")


def _number(text: str, what: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"--remedies: {what} must be a number, got {text!r}") from None
    return value


def parse_remedies(spec: str | Sequence[str], total_steps: int) -> list[tuple[str, dict[str, Any]]]:
    """Return ``[(name, SVIConfig settings), ...]`` for a ``--remedies`` list (see :data:`REMEDY_FORMS`).

    ``warmup`` without a number ramps over a third of ``total_steps``. Each entry is checked
    by building its :class:`~pyro_gen.config.SVIConfig`; an empty list, a repeated entry or
    an unknown form raises ``ValueError`` naming it.
    """
    from ..config import SVIConfig

    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    names = [n for n in names if n]
    if not names:
        raise ValueError("--remedies is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"--remedies lists an entry twice: {names}")
    out = []
    for name in names:
        settings: dict[str, Any] = {}
        for part in name.split("+"):
            head, colon, arg = part.strip().partition(":")
            if head == "plain" and not colon:
                continue
            if head == "beta" and colon:
                settings["beta"] = _number(arg, "beta")
            elif head == "warmup":
                steps = _number(arg, "warmup steps", int) if colon else max(1, total_steps // 3)
                settings["kl_warmup_steps"] = steps
            elif head == "cyclical":
                settings.update(kl_schedule="cyclical", kl_cycles=_number(arg, "cycles", int) if colon else 4)
            elif head == "free-bits" and colon:
                settings["free_bits"] = _number(arg, "free bits")
            elif head == "aggressive":
                settings["aggressive_encoder"] = True
                if colon:
                    settings["aggressive_inner_steps"] = _number(arg, "inner steps", int)
            else:
                raise ValueError(
                    f"--remedies: unknown remedy {part!r}; choose from {', '.join(REMEDY_FORMS)}"
                )
        try:
            SVIConfig(**settings)
        except ValueError as e:
            raise ValueError(f"--remedies {name}: {e}") from None
        out.append((name, settings))
    return out


def _widths(text: str, flag: str) -> list[int]:
    from ..config import parse_widths

    return parse_widths(text, flag)


def compare_collapse(
    data: Any,
    remedies: Sequence[tuple[str, dict[str, Any]]],
    *,
    epochs: float = 200.0,
    batch_size: int = 128,
    lr: float = 1e-3,
    latent_dim: int = 16,
    hidden: Sequence[int] = (256,),
    decoder_hidden: Sequence[int] = (256,),
    k: int = 1000,
    eval_points: int | None = 1000,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train the strong-decoder VAE once per remedy on ``data`` (a binarized ``DataSplit``).

    Returns one dict per remedy: ``name``, ``settings`` (its SVIConfig fields), ``history``
    (the engine's rows: ``train_elbo``, ``train_kl``, ``kl_weight``, ``test_elbo``, ...),
    ``final`` (``active_units``, ``num_units``, ``activity`` and ``kl_per_dim`` arrays, ``kl``
    and ``mutual_information`` in nats, ``test_elbo`` and ``log_likelihood`` in nats per
    image, ``k``, ``num_points``), ``costs`` (:func:`~pyro_gen.experiments.costs.fit_costs`)
    and ``notes``. Every run starts from the same initialization and draws the same
    minibatches; the first remedy is the reference of ``delta_log_likelihood``.
    """
    import torch

    from ..config import SVIConfig, TrainConfig
    from ..diagnostics.variational import active_units, kl_per_dim
    from ..evaluation.likelihood import importance_log_likelihood
    from ..inference.annealing import RemedyELBO, mutual_information
    from ..inference.engine import train
    from ..inference.svi import SVIObjective
    from ..models.strong_decoder import StrongDecoderVAE
    from .costs import fit_costs

    if k < 1:
        raise ValueError(f"--k must be a positive integer, got {k}")
    if eval_points is not None and eval_points < 2:
        raise ValueError(f"--eval-points must be at least 2, got {eval_points}")
    test = data.test if eval_points is None else data.test[:eval_points]
    per_epoch = max(1, data.train.shape[0] // min(batch_size, data.train.shape[0]))
    total = max(1, int(round(epochs * per_epoch)))
    torch.manual_seed(seed)
    template = StrongDecoderVAE(data.dim, latent_dim, hidden=hidden, decoder_hidden=decoder_hidden)
    template.init_output_bias(data.train.mean(0))
    results = []
    for name, settings in remedies:
        model = copy.deepcopy(template)
        cfg = SVIConfig(**settings)
        # every run uses the same uncompiled ELBO code (the remedies need its KL part)
        objective = SVIObjective(
            model, estimator="reparam" if cfg.remedies_on else RemedyELBO(), svi_config=cfg
        )
        train_cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            progress=progress,
            log_every=max(1, total // 50),
            eval_every=max(1, total // 10),
        )
        res = train(objective, data.train, train_cfg, test_data=test, transform=data.batch_transform)
        model.eval()
        au = active_units(model, test)
        kl = kl_per_dim(model, test)
        mi = mutual_information(model.guide, test, seed=seed)
        ev = importance_log_likelihood(model, test, k=k, seed=seed, progress=progress)
        final = {
            "active_units": au["num_active"],
            "num_units": au["num_units"],
            "activity": au["activity"].tolist(),
            "kl_per_dim": kl["kl"].tolist(),
            "kl": kl["total"],
            "mutual_information": mi,
            "test_elbo": float(ev["elbo"]),
            "log_likelihood": float(ev["log_likelihood"]),
            "k": k,
            "num_points": int(test.shape[0]),
        }
        results.append(
            {
                "name": name,
                "settings": settings,
                "history": res.history,
                "final": final,
                "costs": fit_costs(res),
                "notes": list(res.notes),
            }
        )
    reference = results[0]["final"]["log_likelihood"]
    for r in results:
        r["final"]["delta_log_likelihood"] = r["final"]["log_likelihood"] - reference
    return results


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Return the table's rows in the order of :data:`TABLE_COLUMNS` (active units as ``"n / L"``)."""
    rows = []
    for r in results:
        f = r["final"]
        rows.append(
            [
                r["name"],
                f"{f['active_units']} / {f['num_units']}",
                f["kl"],
                f["mutual_information"],
                f["test_elbo"],
                f["log_likelihood"],
                f["delta_log_likelihood"],
                r["costs"]["train_seconds"],
            ]
        )
    return rows


HEADERS = (
    "remedy",
    "active units",
    "KL (nats)",
    "I(x; z) (nats)",
    "test ELBO (nats)",
    "log p(x) IS (nats)",
    "cost vs first (nats)",
    "train seconds",
)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-") or "remedy"


def write_report(results: Sequence[dict[str, Any]], out: str | Path, config: dict[str, Any]) -> Path:
    """Write ``report.md``, ``collapse.csv``, ``comparison.json`` and the figures into ``out``;
    return the path of ``report.md``."""
    import csv

    from ..report import write_json
    from ..report.diagnostics import plot_kl_per_dim
    from ..report.estimators import plot_curves
    from ..report.files import markdown_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    with open(out / "collapse.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TABLE_COLUMNS)
        for r in results:
            f = r["final"]
            w.writerow(
                [
                    r["name"],
                    f["active_units"],
                    f["kl"],
                    f["mutual_information"],
                    f["test_elbo"],
                    f["log_likelihood"],
                    f["delta_log_likelihood"],
                    r["costs"]["train_seconds"],
                ]
            )
    write_json({"config": config, "results": list(results)}, out / "comparison.json")
    figures = []
    for r in results:
        path = out / f"kl_per_dim_{_slug(r['name'])}.png"
        plot_kl_per_dim(r["final"]["kl_per_dim"], path, activity=r["final"]["activity"])
        figures.append(path.name)
    curves = [
        ("test_elbo", "held-out ELBO (nats per image, unweighted)", "Held-out ELBO by remedy"),
        ("train_kl", "training KL(q(z|x) || p(z)) (nats per image)", "KL part during training"),
        ("kl_weight", "KL weight (unitless)", "KL weight by remedy"),
    ]
    for key, ylabel, title in curves:
        plot_curves(results, out / f"{key}.png", y=key, ylabel=ylabel, title=title)
        figures.append(f"{key}.png")
    f0 = results[0]["final"]
    text = [
        "# Posterior collapse: remedies on a VAE with an autoregressive decoder",
        "",
        f"Data `{config['data']}` ({config['binarize']} binarization), latent dimension "
        f"{config['latent_dim']}, encoder {config['hidden']}, MADE decoder {config['decoder_hidden']} "
        f"(conditioned on z in every layer); {config['epochs']:g} epochs at batch {config['batch_size']}, "
        f"Adam lr {config['lr']:g}, seed {config['seed']}; every remedy from the same initialization.",
        f"Measured on the first {f0['num_points']} test images: active units (Var_x E[z_u|x] > 0.01), "
        f"KL to the prior summed over dimensions (closed form), I(x; z) (He et al. 2019; at most "
        f"log N), unweighted test ELBO and log p(x) by importance sampling (k = {f0['k']}); "
        "the cost is log p(x) minus the first row's. Seconds: training updates only.",
        "",
        markdown_table(HEADERS, rows),
        "Figures: " + ", ".join(f"`{f}`" for f in figures),
        "",
    ]
    notes = sorted({n for r in results for n in r["notes"]})
    if notes:
        text += ["Notes:", *[f"- {n}" for n in notes], ""]
    path = out / "report.md"
    path.write_text("\n".join(text))
    from ..report import write_comparison_index

    write_comparison_index(out)
    return path


def training_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the keyword arguments of :func:`compare_collapse` that ``collapse_arguments`` flags
    give (budget, optimizer, network widths, evaluation, seed, progress)."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "latent_dim": args.latent_dim,
        "hidden": _widths(args.hidden, "hidden"),
        "decoder_hidden": _widths(args.decoder_hidden, "decoder_hidden"),
        "k": args.k,
        "eval_points": args.eval_points,
        "seed": args.seed,
        "progress": not args.no_progress,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare collapse`` from parsed flags; print the table and the report path; return 0."""
    import torch

    from ..data import load_data
    from ..report.files import markdown_table

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not args.epochs > 0:
        raise ValueError(f"--epochs must be positive, got {args.epochs}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.latent_dim < 1:
        raise ValueError(f"--latent-dim must be a positive integer, got {args.latent_dim}")
    hidden, decoder_hidden = _widths(args.hidden, "hidden"), _widths(args.decoder_hidden, "decoder_hidden")
    data = load_data(args.data, binarize=args.binarize, seed=args.seed)
    if not data.is_image:
        raise ValueError(f"compare collapse needs binary image data (digits, mnist:PATH), got {args.data!r}")
    n = data.train.shape[0]
    total = max(1, int(round(args.epochs * max(1, n // min(args.batch_size, n)))))
    remedies = parse_remedies(args.remedies, total)
    torch.set_num_threads(args.threads)
    results = compare_collapse(data, remedies, **training_settings(args))
    config = {
        "data": args.data,
        "binarize": args.binarize,
        "remedies": [{"name": name, "settings": s} for name, s in remedies],
        "epochs": args.epochs,
        "steps": total,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "latent_dim": args.latent_dim,
        "hidden": hidden,
        "decoder_hidden": decoder_hidden,
        "k": args.k,
        "eval_points": args.eval_points,
        "seed": args.seed,
        "threads": args.threads,
    }
    path = write_report(results, args.out, config)
    print(markdown_table(HEADERS, table_rows(results)), end="")
    print(f"report: {path}")
    return 0
