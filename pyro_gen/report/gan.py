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
    """Plot both players' losses (and mode metrics if logged) per generator step; return the path."""
    steps = [r["step"] for r in history]
    has_modes = any(r.get("modes_captured") is not None for r in history)
    fig, axes = plt.subplots(1, 2 if has_modes else 1, figsize=(11 if has_modes else 6, 4), squeeze=False)
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
    return save_figure(fig, path)


def plot_mode_coverage(
    samples: torch.Tensor,
    means: torch.Tensor,
    std: float,
    path: str | os.PathLike,
    metrics: dict[str, Any] | None = None,
    num_std: float = 3.0,
) -> Path:
    """Scatter 2-D samples over the modes with their ``num_std``-sigma high-quality discs; return the path."""
    samples = samples.detach().cpu().numpy()
    means = np.asarray(torch.as_tensor(means))
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="samples")
    for m in means:
        ax.add_patch(plt.Circle(m, num_std * std, fill=False, color="C3", lw=1))
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="C3", s=20, label=f"modes ({num_std:g} std discs)")
    if metrics:
        ax.set_title(
            f"{metrics['modes_captured']}/{metrics['num_modes']} modes, "
            f"{100 * metrics['high_quality_share']:.1f}% high quality, KL {metrics['kl_to_uniform']:.3f}"
        )
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
