"""Figures of the Gaussian-mixture comparison (PNG files, matplotlib Agg)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from .figures import plt, save_figure


def _ellipse(ax, mean, cov, color, n_std: float = 2.0) -> None:
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * math.pi, 100)
    circle = np.stack([np.cos(t), np.sin(t)])
    pts = vecs @ (n_std * np.sqrt(np.clip(vals, 0, None))[:, None] * circle) + mean[:, None]
    ax.plot(pts[0], pts[1], color=color, lw=1.5)


def plot_mixtures_2d(
    x: torch.Tensor, mixtures: Mapping[str, object], path: str | os.PathLike, dims: Sequence[int] = (0, 1)
) -> Path:
    """Scatter ``x`` (first two dims by default) with each method's components as 2-sigma ellipses.

    ``mixtures`` maps a method name to :class:`~pyro_gen.models.gmm.MixtureParameters`.
    One panel per method; component k has the same colour in every panel. Returns the PNG path.
    """
    i, j = dims
    xs = np.asarray(torch.as_tensor(x, dtype=torch.float64))[:, [i, j]]
    n = len(mixtures)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    colors = plt.cm.tab10.colors
    for ax, (name, p) in zip(axes[0], mixtures.items()):
        ax.scatter(xs[:, 0], xs[:, 1], s=3, c="0.6", alpha=0.5)
        locs = p.locs.numpy()[:, [i, j]]
        cov = p.covariances.numpy()[:, [i, j]][:, :, [i, j]]
        for k in range(locs.shape[0]):
            c = colors[k % len(colors)]
            _ellipse(ax, locs[k], cov[k], c)
            ax.plot(*locs[k], "x", color=c, ms=7, mew=2)
        ax.set_title(name)
        ax.set_aspect("equal", adjustable="datalim")
    return save_figure(fig, path)


# What each fitting method's training curve is: the history key, the x axis and the y axis.
OBJECTIVES: dict[str, dict[str, str]] = {
    "em": {
        "key": "log_likelihood",
        "x": "EM iteration",
        "y": "training log-likelihood (nats per data point)",
        "name": "log-likelihood",
    },
    "svi": {
        "key": "train_elbo",
        "x": "SVI step",
        "y": "training ELBO (nats per data point)",
        "name": "ELBO",
    },
}


def history_kind(history: Sequence[dict]) -> str:
    """Return ``"em"`` for EM history rows (they log ``log_likelihood``), else ``"svi"``."""
    return "em" if any(r.get("log_likelihood") not in (None, "") for r in history) else "svi"


def objective_labels(kind: str) -> dict[str, str]:
    """Return the training curve of a fit of ``kind`` (``"em"`` or ``"svi"``) as labels.

    Keys: ``key`` (the history key plotted), ``x`` and ``y`` (axis labels) and ``name`` (the
    objective). EM's curve is the training log-likelihood in nats per data point per EM
    iteration; SVI's is the training ELBO in nats per data point per optimizer step.
    """
    if kind not in OBJECTIVES:
        raise ValueError(f"kind must be one of {sorted(OBJECTIVES)}, got {kind!r}")
    return dict(OBJECTIVES[kind])


def traces_figure(histories: Mapping[str, Sequence[dict]], kinds: Mapping[str, str] | None = None) -> Figure:
    """Return a figure with one panel per kind of fit: EM's log-likelihood, SVI's ELBO.

    ``histories`` maps a method name to its history rows; ``kinds`` maps a name to ``"em"`` or
    ``"svi"`` (default: :func:`history_kind` of its rows). Each panel's axes are labelled by
    :func:`objective_labels` (nats per data point against EM iterations or SVI steps); the
    x axis is symmetric-log so the first iterations and the end of a long run both show.
    """
    kinds = dict(kinds or {})
    groups: dict[str, list[tuple[str, Sequence[dict]]]] = {}
    for name, hist in histories.items():
        groups.setdefault(kinds.get(name) or history_kind(hist), []).append((name, hist))
    order = [k for k in OBJECTIVES if k in groups]
    fig, axes = plt.subplots(1, max(1, len(order)), figsize=(5.5 * max(1, len(order)), 4), squeeze=False)
    for ax, kind in zip(axes[0], order):
        labels = objective_labels(kind)
        for name, hist in groups[kind]:
            rows = [r for r in hist if r.get(labels["key"]) not in (None, "")]
            ax.plot([r["step"] for r in rows], [r[labels["key"]] for r in rows], label=name)
        ax.set_xscale("symlog")
        ax.set_xlabel(labels["x"])
        ax.set_ylabel(labels["y"])
        ax.set_title(f"{'EM' if kind == 'em' else 'SVI'}: {labels['name']} during fitting")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_traces(
    histories: Mapping[str, Sequence[dict]], path: str | os.PathLike, kinds: Mapping[str, str] | None = None
) -> Path:
    """Write :func:`traces_figure` as a PNG; return its path.

    EM's panel: log-likelihood per EM iteration; SVI's: ELBO per step (nats per data point).
    """
    return save_figure(traces_figure(histories, kinds), path)


def plot_model_selection(
    ks: Sequence[int], bic: Sequence[float] | None, elpd_loo: Sequence[float] | None, path: str | os.PathLike
) -> Path:
    """Plot BIC (EM, lower is better) and PSIS-LOO elpd (NUTS, higher is better) against K."""
    panels = [
        (n, v)
        for n, v in (("BIC (EM), lower is better", bic), ("elpd_loo (NUTS), higher is better", elpd_loo))
        if v
    ]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.6), squeeze=False)
    for ax, (name, vals) in zip(axes[0], panels):
        ks_here = list(ks)[: len(vals)]
        ax.plot(ks_here, vals, "o-")
        best = int(np.argmin(vals) if "BIC" in name else np.argmax(vals))
        ax.plot(ks_here[best], vals[best], "r*", ms=14)
        ax.set_xlabel("number of components K")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
