"""Figures of posterior diagnostics (PNG): rank/trace plots, ESS, PSIS k-hat, KL per latent dim.

Every figure has a title, labelled axes and units, and stays a readable size: the ArviZ
panels are capped at :data:`MAX_PANELS` (the first quantities in order).
"""

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
from matplotlib import ticker  # noqa: E402

from .figures import readable_log_ticks, save_figure  # noqa: E402

MAX_PANELS = 12  # 3 rows of 4 ArviZ panels: about 2,900 x 1,700 pixels at 100 dpi
KHAT_GOOD, KHAT_OK = 0.5, 0.7  # Vehtari et al. (2024): below 0.5 good, above 0.7 unreliable


@contextlib.contextmanager
def _quiet_arviz(max_panels: int = MAX_PANELS) -> Iterator[None]:
    # ArviZ 0.23's matplotlib backend calls normalize_kwargs with a dict, deprecated in
    # matplotlib 3.11: harmless here, and not ours to fix. The panel cap is ours: ArviZ
    # warns when it draws fewer panels than there are quantities, which is the point.
    with warnings.catch_warnings(), az.rc_context({"plot.max_subplots": max_panels}):
        warnings.filterwarnings("ignore", category=matplotlib.MatplotlibDeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*plot\.max_subplots.*")
        yield


def _figure_of(axes: Any) -> Any:
    return np.asarray(axes).ravel()[0].get_figure()


def _save_titled(fig: Any, title: str, path: str | os.PathLike) -> Path:
    """Add ``title`` above the ArviZ panels (as large as their titles), lay out, save; return the path."""
    axes = fig.get_axes()
    size = max([12.0] + [float(ax.title.get_fontsize()) for ax in axes[:1]])
    fig.suptitle(title, fontsize=size)
    top = 1.0 - 2.2 * size / 72.0 / float(fig.get_size_inches()[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "tight layout not applied" on odd grids
        fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
    return save_figure(fig, path, dpi=100)


def _num_draws(idata: Any) -> int:
    post = idata.posterior
    return int(post.sizes.get("chain", 1) * post.sizes.get("draw", 1))


def plot_rank(
    idata: Any,
    path: str | os.PathLike,
    var_names: list[str] | None = None,
    coords: dict | None = None,
    kind: str = "rank",
    max_panels: int = MAX_PANELS,
) -> Path:
    """Write rank plots (``kind="rank"``, ``az.plot_rank``) or trace plots (``"trace"``); return the path.

    Rank plots show, per chain, the histogram of the draws' ranks among all chains: flat
    and alike for chains that sample the same distribution. Panels are titled with each
    quantity's dimension names and coordinates; at most ``max_panels`` are drawn.
    """
    if kind not in ("rank", "trace"):
        raise ValueError(f"kind must be 'rank' or 'trace', got {kind!r}")
    labeller = az.labels.DimCoordLabeller()
    with _quiet_arviz(max_panels):
        if kind == "rank":
            axes = az.plot_rank(idata, var_names=var_names, coords=coords, labeller=labeller, show=False)
        else:
            axes = az.plot_trace(
                idata, var_names=var_names, coords=coords, labeller=labeller, show=False, compact=True
            )
    n = _num_draws(idata)
    if kind == "rank":
        title = f"Rank plots of {n} draws per quantity, by chain (flat and alike: the chains agree)"
    else:
        title = f"Trace of {n} draws per quantity"
    return _save_titled(_figure_of(axes), title, path)


def plot_ess(
    idata: Any,
    path: str | os.PathLike,
    var_names: list[str] | None = None,
    coords: dict | None = None,
    min_ess: int | None = None,
    max_panels: int = MAX_PANELS,
) -> Path:
    """Write the local ESS plot (``az.plot_ess``: effective draws per quantile region); return the path.

    The dashed line is ``min_ess`` (default: the number of draws, what independent draws
    reach). At most ``max_panels`` panels are drawn.
    """
    ref = _num_draws(idata) if min_ess is None else int(min_ess)
    with _quiet_arviz(max_panels):
        axes = az.plot_ess(
            idata,
            var_names=var_names,
            coords=coords,
            kind="local",
            min_ess=ref,
            labeller=az.labels.DimCoordLabeller(),
            show=False,
        )
    for ax in np.asarray(axes).ravel():
        ax.set_ylabel("ESS for small intervals (draws)")
    return _save_titled(_figure_of(axes), f"Local effective sample size (dashed line: {ref} draws)", path)


def plot_khat(khat: Any, path: str | os.PathLike, title: str = "PSIS k-hat per data point") -> Path:
    """Write a scatter of PSIS k-hat values with the 0.5 and 0.7 thresholds drawn; return the path.

    ``khat`` is an array of k-hat values (one per data point, or one for a global guide) or an
    ArviZ ``ELPDData`` (LOO result); non-finite values are left out. Raises ``ValueError``
    when it holds no finite value.
    """
    k = np.asarray(getattr(khat, "pareto_k", khat), dtype=float).ravel()
    n_values = k.size
    idx = np.flatnonzero(np.isfinite(k))
    if idx.size == 0:
        raise ValueError(f"no finite k-hat value to plot (got {k.size} value(s))")
    k = k[idx]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    colors = np.where(k < KHAT_GOOD, "tab:green", np.where(k < KHAT_OK, "tab:orange", "tab:red"))
    ax.scatter(idx, k, s=10, c=colors)
    label_at = ax.get_yaxis_transform()  # x in axes fractions, y in k-hat: never outside the panel
    for level, label in ((KHAT_GOOD, f"{KHAT_GOOD}: good below"), (KHAT_OK, f"{KHAT_OK}: poor above")):
        ax.axhline(level, color="grey", ls="--", lw=0.8)
        ax.text(1.01, level, label, transform=label_at, va="center", fontsize=7)
    lo, hi = min(float(k.min()), 0.0), max(float(k.max()), 1.0)
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    if n_values == 1:  # a global guide: one k-hat for the whole data set
        ax.set_xlim(-1.0, 1.0)
        ax.set_xticks([0])
        ax.set_xticklabels(["all data points"])
        ax.set_xlabel("one global guide")
    else:
        ax.set_xlim(-0.5, float(n_values) - 0.5)
        ax.set_xlabel("data point (index among the diagnosed test points)")
    ax.set_ylabel("k-hat (Pareto shape, unitless)")
    ax.set_title(title)
    return save_figure(fig, path, dpi=100, tight_layout=True)


def plot_kl_per_dim(
    kl: Any, path: str | os.PathLike, activity: Any | None = None, threshold: float = 0.01
) -> Path:
    """Write a bar chart of KL(q(z_u|x) || p(z_u)) per latent dimension (nats), activity beside it.

    ``activity`` (optional) is Var_x E[z_u | x] per dimension (squared latent units, log
    axis, active above 0.01). Returns the path.
    """
    kl = np.asarray(kl, dtype=float).ravel()
    if kl.size == 0:
        raise ValueError("no latent dimension to plot (kl is empty)")
    ncols = 1 if activity is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 3.2), squeeze=False)
    ax = axes[0, 0]
    units = np.arange(kl.size)
    ax.bar(units, kl, color=np.where(kl < threshold, "tab:red", "tab:blue"))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL to prior (nats / point)")
    ax.set_title(f"KL per latent dimension (red: < {threshold:g} nats)")
    if activity is not None:
        act = np.asarray(activity, dtype=float).ravel()
        ax2 = axes[0, 1]
        act = np.maximum(act, 1e-12)  # log axis
        ax2.bar(units[: act.size], act, color=np.where(act <= 0.01, "tab:red", "tab:blue"))
        ax2.axhline(0.01, color="grey", ls="--", lw=0.8)
        ax2.set_yscale("log")
        ax2.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax2.set_xlabel("latent dimension")
        ax2.set_ylabel("Var_x E[z_u | x] (latent units^2)")
        ax2.set_title("activity (Burda et al.; active > 0.01)")
        readable_log_ticks(ax2, "y")
    return save_figure(fig, path, dpi=100, tight_layout=True)
