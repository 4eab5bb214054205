"""Figures written as PNG files (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MIN_TICK_LABELS = 3


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110, tight_layout: bool = False) -> Path:
    """Write ``fig`` as a PNG at ``dpi`` (parent folders created), close it and return the path.

    ``tight_layout=True`` re-packs the subplots first (figures drawn by ArviZ need it).
    """
    if tight_layout:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _in_view(locs: Sequence[float], lo: float, hi: float) -> int:
    tol = 1e-9 * (hi - lo)
    return sum(1 for v in locs if lo - tol <= v <= hi + tol)


def _short_number(v: float, _pos: int | None = None) -> str:
    return f"{v:.3g}"


def readable_log_ticks(ax: Axes, axis: str = "y", min_labels: int = MIN_TICK_LABELS) -> int:
    """Give a log-scaled axis of ``ax`` at least ``min_labels`` labelled ticks within its view.

    Decades when the view spans enough of them; otherwise 1-2-5 steps, then every integer
    multiple of a power of ten, then evenly spaced round numbers (for spans below a factor
    of about 2). Minor ticks stay unlabelled so labels never overlap. Call it once the
    limits are final. Returns the number of labelled ticks in view (0 for a linear axis,
    which is left alone).
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    if target.get_scale() != "log":
        return 0
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    if not (lo > 0 and math.isfinite(hi) and hi > lo):
        return 0
    every = tuple(float(c) for c in range(1, 10))
    short = ticker.FuncFormatter(_short_number)
    choices = [
        (ticker.LogLocator(base=10), ticker.LogFormatterSciNotation(), ticker.LogLocator(subs=every)),
        (ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)), short, None),
        (ticker.LogLocator(base=10, subs=every), short, None),
        (ticker.MaxNLocator(nbins=min_labels + 1, min_n_ticks=min_labels), short, None),
    ]
    counts = [_in_view(c[0].tick_values(lo, hi), lo, hi) for c in choices]
    best = next((i for i, n in enumerate(counts) if n >= min_labels), len(choices) - 1)
    (major, formatter, minor), n = choices[best], counts[best]
    target.set_major_locator(major)
    target.set_major_formatter(formatter)
    target.set_minor_locator(minor if minor is not None else ticker.NullLocator())
    target.set_minor_formatter(ticker.NullFormatter())
    return n


def plot_elbo_curve(history: Sequence[dict], path: str | os.PathLike, title: str = "ELBO") -> Path:
    """Plot train and held-out ELBO (nats per data point) against epochs; return the PNG path."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ep = [r["epoch"] for r in history]
    ax.plot(ep, [r["train_elbo"] for r in history], label="train ELBO")
    test = [(r["epoch"], r["test_elbo"]) for r in history if r.get("test_elbo") not in (None, "")]
    if test:
        ax.plot(*zip(*test), "o-", ms=3, label="held-out ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per data point)")
    ax.set_title(title)
    vals = [r["train_elbo"] for r in history] + [t[1] for t in test]
    if len(vals) > 4:  # skip the first epochs' steep climb so the end of training is visible
        lo = np.percentile(vals, 5)
        ax.set_ylim(bottom=lo - 0.1 * (max(vals) - lo + 1e-9))
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    shape: Sequence[int] | None = None,
    ncol: int | None = None,
    title: str | None = None,
) -> Path:
    """Tile images ``(N, H, W)`` or flattened ``(N, H*W)`` with ``shape`` into one PNG; return its path."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if shape is not None:
        x = x.reshape(x.shape[0], *shape)
    n = x.shape[0]
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    h, w = x.shape[1], x.shape[2]
    canvas = np.ones((nrow * (h + 1) + 1, ncol * (w + 1) + 1))
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = x[i]
    fig, ax = plt.subplots(figsize=(max(3, ncol * 0.5), max(3, nrow * 0.5)))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def reconstruction_grid(
    originals: torch.Tensor, reconstructions: torch.Tensor, shape: Sequence[int], path: str | os.PathLike
) -> Path:
    """Write originals (odd rows) above their reconstructions (even rows); return the PNG path."""
    n = originals.shape[0]
    ncol = min(n, 10)
    rows = []
    for start in range(0, n, ncol):
        rows += [originals[start : start + ncol], reconstructions[start : start + ncol]]
    return image_grid(torch.cat(rows), path, shape, ncol=ncol, title="data (odd rows) / reconstruction")


def plot_latent_manifold(decode, shape: Sequence[int], path: str | os.PathLike, num: int = 15) -> Path:
    """Decode a ``num x num`` grid of 2-D latent points at standard-normal quantiles; return the PNG path."""
    from torch.distributions import Normal

    q = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, num))
    zx, zy = torch.meshgrid(q, q.flip(0), indexing="xy")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1)
    return image_grid(decode(z), path, shape, ncol=num, title="latent manifold (normal quantiles)")


def plot_latent_scatter(codes: torch.Tensor, labels: torch.Tensor | None, path: str | os.PathLike) -> Path:
    """Scatter the first two latent coordinates of encoded points, coloured by label; return the path."""
    fig, ax = plt.subplots(figsize=(5, 5))
    c = None if labels is None else labels.numpy()
    sc = ax.scatter(codes[:, 0].numpy(), codes[:, 1].numpy(), c=c, cmap="tab10", s=6)
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="class label")
    ax.set_xlabel("z1 (latent units)")
    ax.set_ylabel("z2 (latent units)")
    ax.set_title("encoder means of held-out points")
    return save_figure(fig, path)


def plot_2d_samples(data: torch.Tensor, samples: torch.Tensor, path: str | os.PathLike) -> Path:
    """Scatter 2-D data beside model samples on shared axes; return the PNG path."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True)
    for ax, pts, title in ((axes[0], data, "data"), (axes[1], samples, "samples")):
        ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), s=2, alpha=0.5)
        ax.set_title(f"{title} ({pts.shape[0]:,} points)")
        ax.set_xlabel("x1")
        ax.set_aspect("equal")
    axes[0].set_ylabel("x2")
    return save_figure(fig, path)


def plot_log_likelihood_curve(
    history: Sequence[dict], path: str | os.PathLike, title: str = "EM log-likelihood"
) -> Path:
    """Plot the training log-likelihood (nats per data point) per EM iteration, one line per restart.

    Rows carry ``step`` (iteration), ``log_likelihood`` and optionally ``restart``. Returns the PNG path.
    """
    restarts: dict[int, list[tuple[float, float]]] = {}
    for r in history:
        if r.get("log_likelihood") not in (None, ""):
            restarts.setdefault(int(r.get("restart") or 0), []).append((r["step"], r["log_likelihood"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for restart, pts in sorted(restarts.items()):
        ax.plot(*zip(*pts), "o-", ms=3, label=f"restart {restart}")
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log-likelihood (nats per data point)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(restarts) > 1:
        ax.legend()
    return save_figure(fig, path)


def plot_quality_vs_seconds(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike,
    ylabel: str,
    title: str = "quality against training time",
) -> Path:
    """Plot each named curve of ``(training seconds, quality)`` points on one axis; return the PNG path."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, pts in curves.items():
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, label=name)
    ax.set_xlabel("training seconds")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize=8)
    return save_figure(fig, path)
