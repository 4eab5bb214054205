"""Figures of posterior diagnostics (PNG): rank/trace plots, ESS, PSIS k-hat, KL per latent dim."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .figures import save_figure  # noqa: E402


@contextlib.contextmanager
def _quiet_arviz() -> Iterator[None]:
    # ArviZ 0.23's matplotlib backend calls normalize_kwargs with a dict, deprecated in
    # matplotlib 3.11: harmless here, and not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=matplotlib.MatplotlibDeprecationWarning)
        yield


def _figure_of(axes: Any) -> Any:
    return np.asarray(axes).ravel()[0].get_figure()


def plot_rank(
    idata: Any,
    path: str | os.PathLike,
    var_names: list[str] | None = None,
    coords: dict | None = None,
    kind: str = "rank",
) -> Path:
    """Write rank plots (``kind="rank"``, ``az.plot_rank``) or trace plots (``"trace"``); return the path.

    Rank plots show, per chain, the histogram of the draws' ranks among all chains: flat
    and alike for chains that sample the same distribution.
    """
    if kind not in ("rank", "trace"):
        raise ValueError(f"kind must be 'rank' or 'trace', got {kind!r}")
    with _quiet_arviz():
        if kind == "rank":
            axes = az.plot_rank(idata, var_names=var_names, coords=coords, show=False)
        else:
            axes = az.plot_trace(idata, var_names=var_names, coords=coords, show=False, compact=True)
    return save_figure(_figure_of(axes), path, dpi=100, tight_layout=True)


def plot_ess(
    idata: Any, path: str | os.PathLike, var_names: list[str] | None = None, coords: dict | None = None
) -> Path:
    """Write the local ESS plot (``az.plot_ess``: effective draws per quantile region); return the path."""
    with _quiet_arviz():
        axes = az.plot_ess(idata, var_names=var_names, coords=coords, kind="local", show=False)
    return save_figure(_figure_of(axes), path, dpi=100, tight_layout=True)


def plot_khat(khat: Any, path: str | os.PathLike, title: str = "PSIS k-hat per data point") -> Path:
    """Write a scatter of PSIS k-hat values with the 0.5 and 0.7 thresholds drawn; return the path.

    ``khat`` is an array of k-hat values or an ArviZ ``ELPDData`` (LOO result).
    """
    k = np.asarray(getattr(khat, "pareto_k", khat), dtype=float).ravel()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colors = np.where(k < 0.5, "tab:green", np.where(k < 0.7, "tab:orange", "tab:red"))
    ax.scatter(np.arange(k.size), k, s=10, c=colors)
    for level, label in ((0.5, "0.5: good below"), (0.7, "0.7: poor above")):
        ax.axhline(level, color="grey", ls="--", lw=0.8)
        ax.text(k.size, level, f" {label}", va="center", fontsize=7)
    ax.set_xlabel("data point")
    ax.set_ylabel("k-hat")
    ax.set_title(title)
    return save_figure(fig, path, dpi=100, tight_layout=True)


def plot_kl_per_dim(
    kl: Any, path: str | os.PathLike, activity: Any | None = None, threshold: float = 0.01
) -> Path:
    """Write a bar chart of KL(q(z_u|x) || p(z_u)) per latent dimension (nats), activity beside it."""
    kl = np.asarray(kl, dtype=float)
    ncols = 1 if activity is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 3.2), squeeze=False)
    ax = axes[0, 0]
    units = np.arange(kl.size)
    ax.bar(units, kl, color=np.where(kl < threshold, "tab:red", "tab:blue"))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL to prior (nats / point)")
    ax.set_title("KL per latent dimension (red: collapsed)")
    if activity is not None:
        act = np.asarray(activity, dtype=float)
        ax2 = axes[0, 1]
        act = np.maximum(act, 1e-12)  # log axis
        ax2.bar(units, act, color=np.where(act <= 0.01, "tab:red", "tab:blue"))
        ax2.axhline(0.01, color="grey", ls="--", lw=0.8)
        ax2.set_yscale("log")
        ax2.set_xlabel("latent dimension")
        ax2.set_ylabel("Var_x E[z_u | x]")
        ax2.set_title("activity (Burda et al.; active > 0.01)")
    return save_figure(fig, path, dpi=100, tight_layout=True)
