"""Figures and tables of a gradient-estimator comparison (``pyro-gen compare vae``).

Each function takes the per-estimator results written by :mod:`pyro_gen.compare.vae`: a
list of dicts with ``name``, ``history`` (rows with ``step``, ``seconds_train``,
``test_elbo``, ``train_elbo``), ``variance`` (rows with ``step`` and per-group summaries
``{"total_variance", "snr", ...}``) and ``final`` metrics.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .figures import _save  # noqa: E402


def _curve(history: Sequence[dict], x_key: str) -> tuple[list[float], list[float]]:
    pts = [(r[x_key], r["test_elbo"]) for r in history if r.get("test_elbo") is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_elbo_comparison(results: Sequence[dict], path: str | os.PathLike, x: str = "step") -> Path:
    """Plot held-out ELBO (nats per data point) of each estimator against ``x``.

    ``x`` is ``"step"`` (optimizer steps) or ``"seconds"`` (training wall-clock seconds,
    evaluation and variance measurement excluded). Returns the PNG path.
    """
    if x not in ("step", "seconds"):
        raise ValueError(f"x must be 'step' or 'seconds', got {x!r}")
    key = "step" if x == "step" else "seconds_train"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    finals = []
    for res in results:
        xs, ys = _curve(res["history"], key)
        if xs:
            ax.plot(xs, ys, marker="o", ms=2, lw=1.2, label=res["name"])
            finals.append(ys[-1])
    ax.set_xlabel("optimizer steps" if x == "step" else "training seconds (wall clock)")
    ax.set_ylabel("held-out ELBO (nats per data point)")
    ax.set_title("Held-out ELBO by gradient estimator")
    if finals:  # show the end of training: clip the first steep climb
        lo = min(finals)
        hi = max(finals)
        ax.set_ylim(lo - max(5.0, 2 * (hi - lo)), hi + 0.2 * max(1.0, hi - lo))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_gradient_variance(
    results: Sequence[dict], path: str | os.PathLike, groups: Sequence[str] = ("encoder", "decoder")
) -> Path:
    """Plot each estimator's total gradient variance per parameter group against steps (log y).

    Variance is the trace of the gradient covariance of the loss in nats per data point, from
    repeated draws at fixed parameters. Returns the PNG path.
    """
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for res in results:
            pts = [(r["step"], r[group]["total_variance"]) for r in res["variance"] if group in r]
            pts = [(s, v) for s, v in pts if v is not None and v > 0 and math.isfinite(v)]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1.2, label=res["name"])
        ax.set_yscale("log")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel("total gradient variance")
        ax.set_title(f"{group} parameters")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def plot_snr(
    results: Sequence[dict], path: str | os.PathLike, groups: Sequence[str] = ("encoder", "decoder")
) -> Path:
    """Plot each estimator's gradient signal-to-noise ratio ``||mean|| / sqrt(total variance)``."""
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for res in results:
            pts = [(r["step"], r[group]["snr"]) for r in res["variance"] if group in r]
            pts = [(s, v) for s, v in pts if v is not None and v > 0 and math.isfinite(v)]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1.2, label=res["name"])
        ax.set_yscale("log")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel("gradient SNR")
        ax.set_title(f"{group} parameters")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def _fmt(v, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


FINAL_COLUMNS = (
    ("train_elbo", "train ELBO", ".2f"),
    ("test_elbo", "test ELBO", ".2f"),
    ("test_log_likelihood", "test log p(x) (IS)", ".2f"),
    ("ms_per_step", "ms/step", ".2f"),
    ("cpu_ms_per_step", "CPU ms/step", ".2f"),
    ("encoder_variance", "enc. grad var", ".3g"),
    ("decoder_variance", "dec. grad var", ".3g"),
    ("encoder_snr", "enc. SNR", ".3g"),
    ("decoder_snr", "dec. SNR", ".3g"),
)


def estimator_table(results: Sequence[dict], k: int | None = None) -> str:
    """Return a markdown table of the final metrics (nats per data point, ms per step)."""
    head = ["estimator"] + [c[1].replace("(IS)", f"(IS, k={k})") if k else c[1] for c in FINAL_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        f = res["final"]
        lines.append(
            "| " + " | ".join([res["name"]] + [_fmt(f.get(c[0]), c[2]) for c in FINAL_COLUMNS]) + " |"
        )
    return "\n".join(lines)


def variance_table(results: Sequence[dict], group: str, field: str = "total_variance") -> str:
    """Return a markdown table ``estimator x checkpoint step`` of one group's ``field``."""
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


def write_estimator_csvs(results: Sequence[dict], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``estimators.csv`` (final metrics) and ``gradient_variance.csv`` (long format)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p1 = out / "estimators.csv"
    with p1.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["estimator"] + [c[0] for c in FINAL_COLUMNS])
        for res in results:
            w.writerow([res["name"]] + [res["final"].get(c[0]) for c in FINAL_COLUMNS])
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
