"""``pyro-gen compare families``: every family of deep generative model on one table.

Trains each requested family (by default an autoregressive model (MADE, PixelCNN), a
normalizing flow, a VAE, a GAN and an autoencoder) on the same train/test split of the same
binarized images through its registered :class:`~pyro_gen.registry.ModelFamily` and
:func:`pyro_gen.runs.run_fit` (so every family keeps its own trainer and its own defaults),
then writes one report. What the table says about a family comes from its declaration, never
from its name:

* ``likelihood`` (``"exact"``, ``"bound"``, ``"estimate"`` or None): how the test negative
  log-likelihood in bits/dim is to be read, shown where the family has one;
* ``role``: the family's kind (autoregressive, flow, latent variable, implicit, autoencoder);
* ``sample_observations``: samples are drawn through the likelihood
  (``model.sample(num, mean=False)``), so they are binary like the data;
* ``budgets[budget]``: the training budget (``epochs`` or ``steps``) of ``--budget``;
* ``compare_options``: options that differ from the family's defaults here (e.g. a flow
  modelling the binarized pixels); a ``binarize`` entry is the run's binarization (e.g. an
  energy-based model, which defaults to grey levels, on the same binary pixels as the others).

A family whose metrics carry AIS runs of ``log Z`` (``log_z_runs``, the energy-based models)
has its likelihood marked ``estimate (AIS)``.

Scores: the Frechet distance of ``num_samples`` samples to the test images on the features of
a small digit classifier, with the train-vs-test distance as the floor; linear-probe accuracy
for every model with an encoder (``features``/``encode``), with the raw-pixel probe as
reference; and the costs of each fit (training wall and CPU seconds, ms per step, evaluation
seconds, threads, device) as the run folder recorded them.

Families are discovered through the registry: one that is not registered is skipped and the
report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .arguments import BUDGETS, DEFAULT_FAMILIES, split_names


def family_budget(family: Any, budget: str) -> dict[str, Any]:
    """Return the training budget (``{"epochs": E}`` or ``{"steps": S}``, or ``{}`` for the family's own
    default) that ``family`` declares for ``budget``; ``ValueError`` for an unknown budget name."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {list(BUDGETS)}, got {budget!r}")
    spec = dict((getattr(family, "budgets", None) or {}).get(budget, {}))
    unknown = set(spec) - {"epochs", "steps"}
    if unknown:
        raise ValueError(f"family {family.name!r}: budget {budget!r} has unknown keys {sorted(unknown)}")
    return spec


RUN_OPTIONS = ("binarize",)


def split_compare_options(family: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the family's ``compare_options`` as ``(family settings, run settings)``: ``binarize``
    is a setting of the run (``run_fit``'s ``binarize``), every other entry one of the family."""
    opts = dict(getattr(family, "compare_options", None) or {})
    run = {k: opts.pop(k) for k in RUN_OPTIONS if k in opts}
    return opts, run


def likelihood_kind(family: Any, metrics: dict) -> str | None:
    """Return how the family's test NLL is to be read: its declared ``likelihood``, with
    ``estimate (AIS)`` for an estimate whose log normalizer came from annealed importance sampling."""
    kind = getattr(family, "likelihood", None)
    if kind == "estimate" and metrics.get("log_z_runs") is not None:
        return "estimate (AIS)"
    return kind


def draw_samples(model: Any, family: Any, num: int, seed: int) -> torch.Tensor:
    """Return ``(num, D)`` samples of a trained model as observations.

    A family declaring ``sample_observations`` is sampled through its likelihood
    (``model.sample(num, mean=False)``), so its samples are binary like the data.
    """
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        if getattr(family, "sample_observations", False):
            return model.sample(num, mean=False).float().reshape(num, -1)
        return model.sample(num).float().reshape(num, -1)


def has_encoder(model: Any) -> bool:
    """Return whether ``model`` maps data to codes a linear probe can read (``features`` or ``encode``)."""
    return callable(getattr(model, "features", None)) or callable(getattr(model, "encode", None))


def read_run_costs(run_dir: Path, metrics: dict) -> dict[str, Any]:
    """Return the costs of the fit in ``run_dir`` from its ``metrics.json`` numbers (and ``history.csv``).

    ``steps``, ``train_seconds`` (the metrics' ``seconds``), ``cpu_seconds``, ``threads``,
    ``device`` and ``step_ms`` are the trainer's :class:`~pyro_gen.inference.FitResult`
    fields as the run recorded them; ``eval_seconds`` is the evaluation during training
    (``train_eval_seconds``, else the last history row's cumulative ``eval_seconds``) and
    ``test_eval_seconds`` the test evaluation after it (the metrics' ``eval_seconds``).
    ms/step are seconds / steps of the same fit.
    """
    last = _last_history_row(run_dir / "history.csv")
    steps = int(metrics.get("steps") or 0)
    seconds = float(metrics.get("seconds") or 0.0)
    cpu = metrics.get("cpu_seconds", last.get("cpu_seconds"))
    during = metrics.get("train_eval_seconds", last.get("eval_seconds"))
    after = metrics.get("eval_seconds")
    return {
        "steps": steps,
        "train_seconds": seconds,
        "cpu_seconds": None if cpu is None else float(cpu),
        "eval_seconds": None if during is None else float(during),
        "test_eval_seconds": None if after is None else float(after),
        "ms_per_step": 1000.0 * seconds / max(1, steps),
        "cpu_ms_per_step": None if cpu is None else 1000.0 * float(cpu) / max(1, steps),
        "threads": metrics.get("threads"),
        "device": metrics.get("device"),
        "step_ms": metrics.get("step_ms") or {},
    }


def _last_history_row(path: Path) -> dict[str, float]:
    import csv

    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return {}
    if not rows:
        return {}
    out = {}
    for key in ("seconds", "cpu_seconds", "eval_seconds"):
        try:
            out[key] = float(rows[-1][key])
        except (KeyError, TypeError, ValueError):
            pass
    return out


def compare_families(
    data_spec: str = "digits",
    out: str | Path | None = None,
    *,
    families: tuple[str, ...] | list[str] = DEFAULT_FAMILIES,
    budget: str = "full",
    k: int = 5000,
    num_samples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    reuse: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Train each family on ``data_spec`` and write the one-table report to ``out``.

    ``device`` (``cpu``, ``cuda``, ``auto``) is where each family trains (``run_fit``'s
    ``device``); scoring (samples, Frechet distance, probes) runs on the CPU.

    With ``reuse=True`` a family whose run folder in ``out`` was trained with identical
    settings is not trained again (its metrics and timings are read back).

    Returns ``{"rows": [...], "skipped": {...}, "floor": {...}, "files": [...]}``; each row has
    ``family``, ``role``, ``test_bits_per_dim`` (or None) with ``likelihood_kind``,
    ``frechet_distance`` (squared classifier-feature units), ``probe_accuracy`` (fraction),
    ``costs`` (:func:`read_run_costs` plus ``score_seconds``, the wall seconds of the scoring
    here), ``train_seconds`` and ``run_dir``. Writes ``families.json``, ``families.md``,
    ``samples.png``, ``metrics.png`` and ``quality_vs_seconds.png``.
    """
    from ..data import load_data
    from ..evaluation.probe import probe_split
    from ..evaluation.samples import feature_classifier_for, frechet_distance
    from ..registry import families as registered
    from ..report import write_comparison_index, write_json
    from ..report.estimators import plot_metric_vs_seconds, write_markdown
    from ..report.families import plot_family_metrics, sample_grids_side_by_side
    from ..runs import load_run, run_fit

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {list(BUDGETS)}, got {budget!r}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    out = Path(out or f"reports/families-{data_spec.split(':')[0]}")
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(data_spec, binarize="dynamic", seed=seed)
    if not data.is_image or data.train_labels is None:
        raise ValueError(
            f"compare families needs labelled image data (digits, mnist:PATH), got {data_spec!r}"
        )
    known = registered()
    skipped = {f: "not registered" for f in families if f not in known}
    todo = [f for f in families if f in known]
    test_ref = data.test
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train_bin = data.batch_transform(data.train) if data.batch_transform else data.train
    # The feature classifier sees binarized images on both sides, like every sample here.
    clf = feature_classifier_for(dataclasses.replace(data, train=train_bin), seed=seed)
    floor = {
        "frechet_distance_train_vs_test": frechet_distance(train_bin[:num_samples], test_ref, clf.features),
        "probe_accuracy_raw_pixels": probe_split(None, data, seed=seed)["accuracy"],
        "feature_classifier_accuracy": clf.accuracy_,
    }
    rows: list[dict[str, Any]] = []
    grids: dict[str, torch.Tensor] = {"data (binarized)": test_ref[:36]}
    for name in todo:
        family = known[name]
        run_dir = out / name
        spec = family_budget(family, budget)
        options, run_options = split_compare_options(family)
        fit_args = dict(
            options=options,
            **run_options,
            seed=seed,
            epochs=spec.get("epochs"),
            steps=spec.get("steps"),
            k=k,
        )
        try:
            metrics = _reusable(run_dir, name, data_spec, fit_args) if reuse else None
            if metrics is None:
                if progress:
                    print(f"[families] training {name} ({spec or 'family budget'})", file=sys.stderr)
                metrics = run_fit(
                    name, data_spec, out=run_dir, progress=progress, device=device, overwrite=True, **fit_args
                )
            model, config = load_run(run_dir)
        except Exception as e:  # one family failing must not lose the others' results
            skipped[name] = f"failed: {type(e).__name__}: {e}"
            continue
        t_score = time.perf_counter()
        # A family that trains on grey levels (its own binarize setting) has its samples
        # binarized by one Bernoulli draw per pixel, which is exactly how dynamic binarization
        # turns the grey data into the binary data the others model.
        grey = _setting(config, "binarize", "dynamic") in (None, "none")
        costs = read_run_costs(run_dir, metrics)
        kind = likelihood_kind(family, metrics)
        row: dict[str, Any] = {
            "family": name,
            "role": getattr(family, "role", None) or name,
            "steps": metrics.get("steps"),
            "run_dir": str(run_dir),
            "pixels": "grey levels (samples Bernoulli-binarized)" if grey else "binary pixels",
            "test_bits_per_dim": None,
            "likelihood_kind": None,
            "frechet_distance": None,
            "probe_accuracy": None,
        }
        bpd = metrics.get("test_bits_per_dim")
        if kind is not None and bpd is not None and math.isfinite(bpd):
            row["test_bits_per_dim"] = bpd
            row["likelihood_kind"] = kind
            row["test_log_likelihood"] = metrics.get("test_log_likelihood")
        if callable(getattr(model, "sample", None)):
            samples = draw_samples(model, family, num_samples, seed + 1)
            if grey:
                with torch.random.fork_rng():
                    torch.manual_seed(seed + 2)
                    samples = torch.bernoulli(samples.clamp(0.0, 1.0))
            row["frechet_distance"] = frechet_distance(samples, test_ref, clf.features)
            grids[name] = samples[:36]
        if has_encoder(model):
            row["probe_accuracy"] = probe_split(model, data, seed=seed)["accuracy"]
        costs["score_seconds"] = time.perf_counter() - t_score
        costs["final_eval_seconds"] = (costs["test_eval_seconds"] or 0.0) + costs["score_seconds"]
        row["costs"] = costs
        row["train_seconds"] = costs["train_seconds"]
        rows.append(row)
    files = [
        str(
            write_json(
                {
                    "data": data_spec,
                    "budget": budget,
                    "k": k,
                    "rows": rows,
                    "skipped": skipped,
                    "floor": floor,
                    "num_samples": num_samples,
                },
                out / "families.json",
            )
        )
    ]
    table = format_table(rows, skipped, floor, data_spec, budget, k)
    files.append(str(write_markdown(table, out / "families.md")))
    files.append(str(sample_grids_side_by_side(grids, data.shape, out / "samples.png")))
    if rows:
        files.append(str(plot_family_metrics(rows, out / "metrics.png")))
        files.append(
            str(
                plot_metric_vs_seconds(
                    rows,
                    out / "quality_vs_seconds.png",
                    y="frechet_distance",
                    ylabel="classifier-feature Frechet distance (lower is better)",
                    name_key="family",
                )
            )
        )
    files.append(str(write_comparison_index(out)))  # the page links every family's run folder
    return {"rows": rows, "skipped": skipped, "floor": floor, "files": files}


def _setting(config: dict, key: str, default: Any = None) -> Any:
    """Return ``key`` from a run's ``config.json``, at the top level or inside one of its sections."""
    if key in config:
        return config[key]
    for value in config.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return default


def _reusable(run_dir: Path, name: str, data_spec: str, fit_args: dict) -> dict | None:
    """Return the metrics of a finished run in ``run_dir`` trained with these settings, else None."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    want = {"family": name, "data": data_spec, **fit_args["options"]}
    want.update({k: v for k, v in fit_args.items() if k != "options" and v is not None})
    same = all(_setting(config, k) == v for k, v in want.items())
    return metrics if same and (run_dir / "checkpoint.pt").exists() else None


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: list[dict], skipped: dict, floor: dict, data_spec: str, budget: str, k: int) -> str:
    """Return the report as Markdown: a quality table and a cost table (one row per family each).

    Costs: training wall seconds, wall and CPU ms per step, evaluation seconds (during training,
    and after it: test evaluation plus scoring), torch threads and device.
    """
    from ..report.estimators import cost_table, timing_note

    lines = [
        f"# Families on {data_spec} (binarized; budget {budget})",
        "",
        "| family | kind | trained on | test NLL (bits/dim) | NLL is | Frechet distance | linear probe |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['role']} | {r.get('pixels', 'binary pixels')} | "
            f"{_fmt(r['test_bits_per_dim'], '.4f')} | "
            f"{r['likelihood_kind'] or '-'} | {_fmt(r['frechet_distance'], '.2f')} | "
            f"{_fmt(r['probe_accuracy'], '.3f')} |"
        )
    lines += [
        "",
        "## Costs",
        "",
        cost_table([{"name": r["family"], "costs": r["costs"]} for r in rows], "family"),
        "",
        timing_note([{"costs": r["costs"]} for r in rows])
        + " GAN steps are generator steps. eval s (final) is the test evaluation after training "
        "plus the scoring here (samples, Frechet distance, probe).",
        "",
        f"References: Frechet distance of binarized training images to the test set "
        f"{floor['frechet_distance_train_vs_test']:.2f}; linear probe on raw pixels "
        f"{floor['probe_accuracy_raw_pixels']:.3f}; feature classifier test accuracy "
        f"{floor['feature_classifier_accuracy']:.3f}.",
        f"NLL: exact = the model's exact likelihood; bound = a lower bound on the discrete likelihood "
        f"(dequantized flow); estimate = importance sampling with k={k}; estimate (AIS) = an energy-based "
        "model's dequantized bound with log Z by annealed importance sampling.",
    ]
    if skipped:
        lines.append("Not in the table: " + "; ".join(f"{f} ({why})" for f, why in skipped.items()) + ".")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run ``pyro-gen compare families`` from parsed flags; print the table and the folder; return 0."""
    fams = split_names(args.families, "--families")
    res = compare_families(
        args.data,
        args.out,
        families=fams,
        budget=args.budget,
        k=args.k,
        num_samples=args.num_samples,
        seed=args.seed,
        progress=not args.no_progress,
        reuse=args.reuse,
        device=args.device,
    )
    out = Path(res["files"][0]).parent
    print(format_table(res["rows"], res["skipped"], res["floor"], args.data, args.budget, args.k))
    print(f"report: {out}")
    return 0
