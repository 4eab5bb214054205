"""Figures of the autoencoder and autoregressive families and of the one-table family comparison."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .figures import plt, save_figure


def plot_loss_curve(
    history: Sequence[dict], path: str | os.PathLike, title: str = "autoencoder loss"
) -> Path:
    """Plot ``train_loss`` and ``test_loss`` (per data point) against epochs; return the PNG path.

    The loss is the model's own (reconstruction plus any penalty), in its units per data point.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], label="train")
    test = [(r["epoch"], r["test_loss"]) for r in history if r.get("test_loss") not in (None, "")]
    if test:
        ax.plot(*zip(*test), "o-", ms=3, label="held-out")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per data point")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _tile(x: np.ndarray, shape: Sequence[int], ncol: int) -> np.ndarray:
    x = x.reshape(x.shape[0], *shape)
    n, (h, w) = x.shape[0], shape
    nrow = int(math.ceil(n / ncol))
    canvas = np.full((nrow * (h + 1) + 1, ncol * (w + 1) + 1), 0.35)  # grey separators
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = x[i]
    return canvas


def sample_grids_side_by_side(
    samples: Mapping[str, torch.Tensor], shape: Sequence[int], path: str | os.PathLike, num: int = 36
) -> Path:
    """Draw one image grid per family (first ``num`` samples each) in a row of panels; return the PNG."""
    if not samples:
        raise ValueError("no samples to draw")
    ncol = int(math.ceil(math.sqrt(num)))
    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.8), squeeze=False)
    for ax, (name, x) in zip(axes[0], samples.items()):
        arr = x[:num].detach().cpu().double().numpy().clip(0, 1)
        ax.imshow(_tile(arr, shape, ncol), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"Samples of each family (first {num}; pixel intensity in [0, 1])", fontsize=11)
    return save_figure(fig, path)


FAMILY_PANELS = (
    ("test_bits_per_dim", "test NLL", "bits per dimension (lower is better)"),
    ("frechet_distance", "classifier-feature Frechet distance", "distance (lower is better)"),
    ("probe_accuracy", "linear-probe accuracy", "test accuracy (fraction)"),
    ("train_seconds", "training time", "wall seconds"),
)


def plot_family_metrics(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Bar charts of bits/dim, Frechet distance, probe accuracy and training seconds per family.

    One panel per metric with its unit on the y axis; a family without the metric has no
    bar (a panel with none says so). Returns the PNG path.
    """
    fig, axes = plt.subplots(1, len(FAMILY_PANELS), figsize=(4 * len(FAMILY_PANELS), 3.7))
    for ax, (key, title, ylabel) in zip(axes, FAMILY_PANELS):
        names = [r["family"] for r in rows if r.get(key) is not None]
        vals = [r[key] for r in rows if r.get(key) is not None]
        ax.bar(range(len(vals)), vals, color="tab:blue")
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        if not vals:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("model family")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Model families on one data set", fontsize=11)
    return save_figure(fig, path, tight_layout=True)
