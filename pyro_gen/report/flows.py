"""Figures for 2-D density models: the learned density beside the data and the model's samples."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .figures import plt, save_figure


def data_bounds(x: torch.Tensor, pad: float = 0.15) -> tuple[float, float, float, float]:
    """Return ``(xmin, xmax, ymin, ymax)`` around 2-D points ``x``, padded by ``pad`` of the range."""
    lo, hi = x.min(0).values, x.max(0).values
    span = (hi - lo).clamp_min(1e-6)
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


@torch.no_grad()
def log_density_grid(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    bounds: tuple[float, float, float, float],
    num: int = 200,
    batch_size: int = 8192,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``log_prob`` on a ``num x num`` grid of cell centres over ``bounds``.

    Returns ``(xs, ys, logp)`` with ``logp[j, i]`` the log-density (nats) at ``(xs[i], ys[j])``;
    ``exp(logp).sum() * dx * dy`` is the midpoint-rule integral of the density over the box.
    """
    x0, x1, y0, y1 = bounds
    dx, dy = (x1 - x0) / num, (y1 - y0) / num
    xs = x0 + dx * (np.arange(num) + 0.5)
    ys = y0 + dy * (np.arange(num) + 0.5)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.get_default_dtype())
    out = torch.cat([log_prob(pts[i : i + batch_size]) for i in range(0, pts.shape[0], batch_size)])
    return xs, ys, out.reshape(num, num).double().numpy()


def plot_flow_density(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    samples: torch.Tensor,
    path: str | os.PathLike,
    title: str = "",
    num: int = 200,
) -> Path:
    """Write data | learned density exp(log p) | model samples side by side; return the PNG path."""
    bounds = data_bounds(data)
    xs, ys, logp = log_density_grid(log_prob, bounds, num)
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.5), sharex=True, sharey=True, layout="constrained")
    axes[0].scatter(data[:, 0].numpy(), data[:, 1].numpy(), s=1.5, alpha=0.4)
    axes[0].set_title("held-out data")
    dens = np.exp(logp)
    # colour scale clipped at the 99.5th percentile so a few sharp spikes do not hide the rest
    image = axes[1].imshow(
        dens,
        origin="lower",
        extent=bounds,
        aspect="auto",
        cmap="viridis",
        interpolation="nearest",
        vmax=float(np.percentile(dens, 99.5)) or None,
    )
    fig.colorbar(image, ax=axes[1], label="density p(x) (per unit area)")
    axes[1].set_title("learned density" + (f" ({title})" if title else ""))
    s = samples.detach().cpu()
    axes[2].scatter(s[:, 0].numpy(), s[:, 1].numpy(), s=1.5, alpha=0.4, color="C1")
    axes[2].set_title(f"samples ({s.shape[0]:,})")
    for ax in axes:
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
        ax.set_xlabel("x1")
    axes[0].set_ylabel("x2")
    return save_figure(fig, path)
