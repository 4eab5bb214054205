"""Figures and tables of a comparison of training methods (``pyro-gen compare vae``, ``discrete``,
``gmm``, ``families``).

Results are lists of dicts with ``name``, ``history`` (rows with ``step``, ``seconds``: cumulative
*training* wall seconds, and the method's quality keys such as ``test_elbo``), ``variance``
(``compare vae``: rows with ``step`` and per-group summaries ``{"total_variance", "snr", ...}``),
``final`` (quality metrics) and ``costs`` (``steps``, ``train_seconds``, ``cpu_seconds``,
``eval_seconds``, ``final_eval_seconds``, ``ms_per_step``, ``cpu_ms_per_step``, ``step_ms``,
``threads``, ``device``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .figures import readable_log_ticks, save_figure  # noqa: E402

X_LABELS = {"step": "optimizer steps", "seconds": "training seconds (wall clock, evaluation excluded)"}


def plot_curves(
    results: Sequence[dict],
    path: str | os.PathLike,
    *,
    y: str,
    x: str = "step",
    ylabel: str,
    title: str,
    clip: bool = False,
    xscale: str = "linear",
) -> Path:
    """Plot each result's history key ``y`` against ``x`` (``"step"`` or ``"seconds"``); return the PNG path.

    ``x="seconds"`` is the cumulative training wall time each history row carries (evaluation
    and callbacks excluded by the trainer). ``clip`` zooms on the end of training.
    """
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, got {x!r}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    finals = []
    for res in results:
        pts = [(r[x], r[y]) for r in res["history"] if r.get(y) not in (None, "") and r.get(x) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2, lw=1.2, label=res["name"])
            finals.append(pts[-1][1])
    ax.set_xscale(xscale)
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if clip and finals:  # show the end of training: clip the first steep climb
        lo, hi = min(finals), max(finals)
        ax.set_ylim(lo - max(5.0, 2 * (hi - lo)), hi + 0.2 * max(1.0, hi - lo))
    readable_log_ticks(ax, "x")
    ax.grid(alpha=0.3)
    if finals:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_elbo_comparison(results: Sequence[dict], path: str | os.PathLike, x: str = "step") -> Path:
    """Plot held-out ELBO (nats per data point) of each method against ``x``; return the PNG path.

    ``x`` is ``"step"`` (optimizer steps) or ``"seconds"`` (training wall seconds from the
    history, evaluation and variance measurement excluded).
    """
    return plot_curves(
        results,
        path,
        y="test_elbo",
        x=x,
        ylabel="held-out ELBO (nats per data point)",
        title="Held-out ELBO by gradient estimator",
        clip=True,
    )


def plot_metric_vs_seconds(
    rows: Sequence[dict],
    path: str | os.PathLike,
    *,
    y: str,
    ylabel: str,
    name_key: str = "name",
    title: str = "final quality against training time",
) -> Path:
    """Scatter each row's final ``y`` against its ``train_seconds`` (one labelled point per method).

    Returns the PNG path.
    """
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for r in rows:
        if r.get(y) is None or r.get("train_seconds") is None:
            continue
        ax.plot(r["train_seconds"], r[y], "o")
        ax.annotate(str(r[name_key]), (r["train_seconds"], r[y]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xlabel(X_LABELS["seconds"])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


GRADIENT_FIELDS = {
    "total_variance": (
        "total gradient variance ((nats/point)^2)",
        "Gradient variance by estimator (trace of the covariance, log scale)",
    ),
    "snr": ("gradient SNR (unitless)", "Gradient signal-to-noise ratio by estimator (log scale)"),
}


def gradient_figure(
    results: Sequence[dict], field: str, groups: Sequence[str] = ("encoder", "decoder")
) -> Figure:
    """Return the figure of one gradient summary per parameter group against optimizer steps.

    ``field`` is ``"total_variance"`` (trace of the gradient covariance of the loss in nats
    per data point, so (nats/point)^2) or ``"snr"`` (``||mean|| / sqrt(total variance)``,
    unitless); one panel per group, one line per result, log y axis with at least three
    labelled ticks on every panel. The caller saves or closes it.
    """
    if field not in GRADIENT_FIELDS:
        raise ValueError(f"field must be one of {sorted(GRADIENT_FIELDS)}, got {field!r}")
    if not groups:
        raise ValueError("groups must name at least one parameter group")
    ylabel, title = GRADIENT_FIELDS[field]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.4), squeeze=False)
    for ax, group in zip(axes[0], groups):
        drawn = False
        for res in results:
            rows = [r for r in res["variance"] if isinstance(r.get(group), dict)]
            pts = [(r["step"], r[group].get(field)) for r in rows]
            pts = [(s, v) for s, v in pts if v is not None and v > 0 and math.isfinite(v)]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1.2, label=res["name"])
                drawn = True
        ax.set_yscale("log")
        if not drawn:
            ax.set_ylim(0.1, 10.0)
            ax.text(0.5, 0.5, "no finite measurements", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{group} parameters")
        readable_log_ticks(ax, "y")
        ax.grid(alpha=0.3, which="both")
        if drawn and ax is axes[0][0]:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def plot_gradient_variance(
    results: Sequence[dict], path: str | os.PathLike, groups: Sequence[str] = ("encoder", "decoder")
) -> Path:
    """Plot each estimator's total gradient variance per parameter group against steps (log y).

    Variance is the trace of the gradient covariance of the loss in nats per data point, from
    repeated draws at fixed parameters. Returns the PNG path.
    """
    return save_figure(gradient_figure(results, "total_variance", groups), path)


def plot_snr(
    results: Sequence[dict], path: str | os.PathLike, groups: Sequence[str] = ("encoder", "decoder")
) -> Path:
    """Plot each estimator's gradient signal-to-noise ratio ``||mean|| / sqrt(total variance)``.

    Unitless, log y axis, one panel per parameter group. Returns the PNG path.
    """
    return save_figure(gradient_figure(results, "snr", groups), path)


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


FINAL_COLUMNS = (
    ("train_elbo", "train ELBO", ".2f"),
    ("test_elbo", "test ELBO", ".2f"),
    ("test_log_likelihood", "test log p(x) (IS)", ".2f"),
    ("encoder_variance", "enc. grad var", ".3g"),
    ("decoder_variance", "dec. grad var", ".3g"),
    ("encoder_snr", "enc. SNR", ".3g"),
    ("decoder_snr", "dec. SNR", ".3g"),
)
COST_COLUMNS = (
    ("steps", "steps", "d"),
    ("ms_per_step", "ms/step", ".2f"),
    ("cpu_ms_per_step", "CPU ms/step", ".2f"),
    ("train_seconds", "train s", ".2f"),
    ("eval_seconds", "eval s (in training)", ".2f"),
    ("final_eval_seconds", "eval s (final)", ".2f"),
    ("threads", "threads", "d"),
    ("device", "device", "s"),
)


def _step_spread(step_ms: dict | None) -> str:
    if not step_ms or step_ms.get("median") is None:
        return "-"
    return f"{step_ms['median']:.2f} [{step_ms['p10']:.2f}, {step_ms['p90']:.2f}] (n={int(step_ms['n'])})"


def cost_table(results: Sequence[dict], name_header: str = "method") -> str:
    """Return a Markdown table of each result's ``costs``: ms/step (wall, CPU), seconds, threads, device.

    The per-step column is the median wall milliseconds of one step with its 10th-90th
    percentile range and the number of timed steps.
    """
    head = [name_header] + [c[1] for c in COST_COLUMNS] + ["step ms median [p10, p90]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        c = res.get("costs", {})
        cells = [_fmt(c.get(key), spec) for key, _, spec in COST_COLUMNS]
        lines.append("| " + " | ".join([str(res["name"]), *cells, _step_spread(c.get("step_ms"))]) + " |")
    return "\n".join(lines)


def timing_note(results: Sequence[dict]) -> str:
    """Return one paragraph saying how the times in :func:`cost_table` were measured."""
    threads = sorted({str(r["costs"].get("threads")) for r in results if r.get("costs")})
    devices = sorted({str(r["costs"].get("device")) for r in results if r.get("costs")})
    return (
        "Timing: training wall seconds (`time.perf_counter`) and CPU seconds of this process "
        "(`time.process_time`, all threads) are measured by the trainer around the updates alone; "
        "held-out evaluation and callbacks during training (e.g. gradient-variance measurement) are "
        "timed separately (eval s, in training) and so is the scoring after training (eval s, final): "
        "evaluation is excluded from train s and ms/step. ms/step = train s / steps. The per-step "
        "column gives the median wall time of one step and its 10th-90th percentile range over the "
        f"n timed steps. Torch threads: {', '.join(threads) or '-'}; device: {', '.join(devices) or '-'}. "
        "Curves against seconds use the cumulative training seconds of each history row."
    )


def estimator_table(results: Sequence[dict], k: int | None = None) -> str:
    """Return a Markdown table of the final metrics (nats per data point) with wall and CPU ms per step."""
    cols = [*FINAL_COLUMNS]
    head = ["estimator"] + [c[1].replace("(IS)", f"(IS, k={k})") if k else c[1] for c in cols]
    head += ["ms/step", "CPU ms/step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        f, c = res["final"], res.get("costs", {})
        cells = [_fmt(f.get(key), spec) for key, _, spec in cols]
        cells += [_fmt(c.get("ms_per_step")), _fmt(c.get("cpu_ms_per_step"))]
        lines.append("| " + " | ".join([res["name"], *cells]) + " |")
    return "\n".join(lines)


def discrete_table(results: Sequence[dict]) -> str:
    """Return a Markdown table of the binary-latent comparison: exact ELBOs and log p(x) (nats per point)."""
    head = [
        "method",
        "estimator",
        "train exact ELBO",
        "test exact ELBO",
        "test exact log p(x)",
        "ms/step",
        "CPU ms/step",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        f, c = r["final"], r.get("costs", {})
        cells = [_fmt(f[k]) for k in ("train_exact_elbo", "test_exact_elbo", "test_log_likelihood")]
        cells += [_fmt(c.get("ms_per_step")), _fmt(c.get("cpu_ms_per_step"))]
        lines.append("| " + " | ".join([r["name"], r["estimator"], *cells]) + " |")
    return "\n".join(lines)


def variance_table(results: Sequence[dict], group: str, field: str = "total_variance") -> str:
    """Return a Markdown table ``estimator x checkpoint step`` of one group's ``field``."""
    steps = sorted({r["step"] for res in results for r in res["variance"]})
    lines = [
        "| estimator | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|" + "---|" * (len(steps) + 1),
    ]
    for res in results:
        by_step = {r["step"]: r.get(group, {}).get(field) for r in res["variance"]}
        lines.append(
            "| " + res["name"] + " | " + " | ".join(_fmt(by_step.get(s), ".3g") for s in steps) + " |"
        )
    return "\n".join(lines)


def write_markdown(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (Markdown) to ``path``, ending with one newline; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
    return path


def write_estimator_csvs(results: Sequence[dict], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``estimators.csv`` (final metrics and costs) and ``gradient_variance.csv`` (long format)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p1 = out / "estimators.csv"
    cost_keys = [c[0] for c in COST_COLUMNS]
    with p1.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["estimator"] + [c[0] for c in FINAL_COLUMNS] + cost_keys + ["step_ms_median"])
        for res in results:
            c = res.get("costs", {})
            w.writerow(
                [res["name"]]
                + [res["final"].get(k[0]) for k in FINAL_COLUMNS]
                + [c.get(k) for k in cost_keys]
                + [(c.get("step_ms") or {}).get("median")]
            )
    p2 = out / "gradient_variance.csv"
    with p2.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["estimator", "step", "group", "total_variance", "snr", "median_snr", "mean_norm"])
        for res in results:
            for row in res["variance"]:
                for group, summ in row.items():
                    if isinstance(summ, dict):
                        w.writerow(
                            [
                                res["name"],
                                row["step"],
                                group,
                                summ["total_variance"],
                                summ["snr"],
                                summ["median_snr"],
                                summ["mean_norm"],
                            ]
                        )
    return [p1, p2]
