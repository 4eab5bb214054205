"""Figures of the Gaussian-mixture comparison (PNG files, matplotlib Agg)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

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


def plot_traces(histories: Mapping[str, Sequence[dict]], path: str | os.PathLike) -> Path:
    """Plot each optimizer's objective (nats per point) against its iteration/step; return the PNG path.

    EM rows carry ``log_likelihood``; SVI rows ``train_elbo`` (an ELBO, below the log-likelihood).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in histories.items():
        rows = [r for r in hist if r.get("train_elbo") not in (None, "")]
        if not rows:
            continue
        ax.plot([r["step"] for r in rows], [r["train_elbo"] for r in rows], label=name)
    ax.set_xscale("symlog")
    ax.set_xlabel("EM iteration / SVI step")
    ax.set_ylabel("nats per data point")
    ax.set_title("log-likelihood (EM) and ELBO (SVI) during fitting")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


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
