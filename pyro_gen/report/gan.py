"""GAN figures (PNG): loss curves, mode coverage, D vs D*, minimax vs non-saturating gradients."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .figures import plt, save_figure


def plot_gan_losses(history: Sequence[dict], path: str | os.PathLike, title: str = "GAN losses") -> Path:
    """Plot both players' losses per generator step, and the mode metrics if logged; return the path.

    With mode metrics in the history (the ring and grid mixtures) a second panel shows modes
    captured and the high-quality share, and a third (when logged) the within-mode spread:
    the median over covered modes of the samples' spread around each mode over the data's std
    (1: as wide as the data; the band 0.8-1.25 marked).
    """
    steps = [r["step"] for r in history]
    has_modes = any(r.get("modes_captured") is not None for r in history)
    spread_rows = [r for r in history if _number(r.get("within_mode_spread")) is not None]
    panels = 1 + has_modes + bool(spread_rows)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(steps, [r["d_loss"] for r in history], label="discriminator loss")
    ax.plot(steps, [r["g_loss"] for r in history], label="generator loss")
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss (nats for minimax / ns)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if has_modes:
        rows = [r for r in history if r.get("modes_captured") is not None]
        ax = axes[0, 1]
        ax.plot([r["step"] for r in rows], [r["modes_captured"] for r in rows], "o-", label="modes captured")
        ax.set_xlabel("generator step")
        ax.set_ylabel("modes captured")
        ax2 = ax.twinx()
        ax2.plot(
            [r["step"] for r in rows],
            [100 * r["high_quality_share"] for r in rows],
            "s--",
            c="C1",
            label="HQ %",
        )
        ax2.set_ylabel("high-quality samples (%)")
        ax2.set_ylim(0, 100)
        ax.set_title("mode coverage during training")
        ax.grid(alpha=0.3)
    if spread_rows:
        ax = axes[0, panels - 1]
        ax.axhspan(0.8, 1.25, color="C2", alpha=0.15, label="0.8-1.25")
        ax.axhline(1.0, color="C2", lw=1)
        ax.plot(
            [r["step"] for r in spread_rows],
            [_number(r["within_mode_spread"]) for r in spread_rows],
            "o-",
            ms=2,
            c="C4",
            label="samples / data",
        )
        ax.set_xlabel("generator step")
        ax.set_ylabel("within-mode spread (x data std, median over modes)")
        ax.set_title("within-mode spread during training")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    # the mode panel's right-hand axis label sits between panels: lay them out around it
    return save_figure(fig, path, tight_layout=panels > 1)


def _number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None (history CSVs hold '' and NaN for missing values)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def plot_mode_coverage(
    samples: torch.Tensor,
    means: torch.Tensor,
    std: float,
    path: str | os.PathLike,
    metrics: dict[str, Any] | None = None,
    num_std: float = 3.0,
) -> Path:
    """Scatter 2-D samples over the modes with their ``num_std``-sigma high-quality discs; return the path.

    Each mode also gets a dashed circle of radius ``std`` (the data's 1-sigma). ``metrics``
    (mode metrics) go into the title; when it holds ``within_mode_spread`` (and
    ``within_mode_spread_min``/``_max``) or ``mmd2`` (with ``mmd2_floor``) they are added on a
    second line.
    """
    samples = samples.detach().cpu().numpy()
    means = np.asarray(torch.as_tensor(means))
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="samples")
    for m in means:
        ax.add_patch(plt.Circle(m, num_std * std, fill=False, color="C3", lw=1))
        ax.add_patch(plt.Circle(m, std, fill=False, color="C2", lw=0.8, ls="--"))
    ax.scatter(
        means[:, 0],
        means[:, 1],
        marker="x",
        c="C3",
        s=20,
        label=f"modes ({num_std:g} std discs; 1 std dashed)",
    )
    if metrics:
        lines = [
            f"{metrics['modes_captured']}/{metrics['num_modes']} modes, "
            f"{100 * metrics['high_quality_share']:.1f}% high quality, KL {metrics['kl_to_uniform']:.3f}"
        ]
        extra = []
        spread = _number(metrics.get("within_mode_spread"))
        if spread is not None:
            lo = _number(metrics.get("within_mode_spread_min"))
            hi = _number(metrics.get("within_mode_spread_max"))
            rng = f" ({lo:.2f}-{hi:.2f})" if lo is not None and hi is not None else ""
            extra.append(f"spread {spread:.2f}x data std{rng}")
        mmd2 = _number(metrics.get("mmd2"))
        if mmd2 is not None:
            floor = _number(metrics.get("mmd2_floor"))
            extra.append(f"MMD$^2$ {mmd2:.2g}" + (f" (data floor {floor:.1g})" if floor is not None else ""))
        if extra:
            lines.append(", ".join(extra))
        ax.set_title("\n".join(lines), fontsize=10 if extra else None)
    pad = 0.5 * (means.max() - means.min()) / max(1, int(np.sqrt(len(means)))) + 0.3
    ax.set_xlim(means[:, 0].min() - pad, means[:, 0].max() + pad)
    ax.set_ylim(means[:, 1].min() - pad, means[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path)


def plot_discriminator_optimality(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Plot a trained discriminator against ``D* = p_data / (p_data + p_g)`` on a 1-D grid; return the path.

    ``result`` is what :func:`~pyro_gen.inference.adversarial.discriminator_optimality` returns.
    """
    x = result["grid"].squeeze(-1).numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, result["d_star"].numpy(), "k--", label="D*(x) = p_data / (p_data + p_g)")
    ax.plot(x, result["d"].numpy(), label="trained discriminator")
    ax.set_xlabel("x")
    ax.set_ylabel("probability 'real'")
    ax.set_title(f"fixed generator: max |D - D*| = {result['max_abs_error']:.3f}")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_generator_gradients(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Plot minimax and non-saturating generator-gradient norms as the discriminator trains; return the path.

    ``rows`` come from :func:`~pyro_gen.inference.adversarial.generator_gradient_norms`.
    """
    steps = [r["d_step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, [r["minimax_grad_norm"] for r in rows], label="minimax: E log(1 - D(G(z)))")
    ax.semilogy(steps, [r["ns_grad_norm"] for r in rows], label="non-saturating: -E log D(G(z))")
    ax.set_xlabel("discriminator steps against the fixed initial generator")
    ax.set_ylabel("generator gradient L2 norm")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["d_accuracy"] for r in rows], ":", c="gray", label="D accuracy")
    ax2.set_ylabel("discriminator accuracy", color="gray")
    ax2.set_ylim(0.4, 1.01)
    ax.set_title("the minimax generator gradient vanishes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)
