"""GAN theory made visible: the optimal discriminator and the vanishing minimax gradient.

* :func:`discriminator_optimality` trains a discriminator against a *fixed* generator and
  compares it with ``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` (Goodfellow et al. 2014,
  proposition 1), where both densities are known in closed form.
* :func:`generator_gradient_norms` shows the minimax generator gradient vanishing as the
  discriminator becomes confident, while the non-saturating one does not (Goodfellow et al.
  2014, section 3; Arjovsky & Bottou 2017, figure 2).

The losses are the adversarial trainer's (:func:`~pyro_gen.inference.adversarial.discriminator_loss`,
:func:`~pyro_gen.inference.adversarial.generator_loss`); the figures are
:func:`pyro_gen.report.gan.plot_discriminator_optimality` and
:func:`pyro_gen.report.gan.plot_generator_gradients`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.checks import as_data_tensor
from ..inference.adversarial import discriminator_loss, generator_loss
from ..models.gan import GAN


def gradient_norm(params: Sequence[torch.Tensor]) -> float:
    """Return the global L2 norm of the ``.grad`` of ``params`` (0 when none has a gradient)."""
    sq = [p.grad.pow(2).sum() for p in params if p.grad is not None]
    return float(torch.stack(sq).sum().sqrt()) if sq else 0.0


def optimal_discriminator(log_prob_data: torch.Tensor, log_prob_model: torch.Tensor) -> torch.Tensor:
    """Return ``D*(x) = p_data(x) / (p_data(x) + p_g(x)) = sigmoid(log p_data - log p_g)``.

    Inputs are log-densities (nats) at the same points; the result is a probability per point.
    """
    return torch.sigmoid(log_prob_data - log_prob_model)


def fit_discriminator(
    discriminator: torch.nn.Module | GAN,
    sample_real: Callable[[int], torch.Tensor],
    sample_fake: Callable[[int], torch.Tensor],
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    progress: bool = False,
) -> list[float]:
    """Train ``discriminator`` (logits) by binary cross-entropy against a *fixed* generator.

    ``discriminator`` is a module returning logits ``(B, 1)`` or a :class:`GAN` (its critic,
    with the GAN's data standardization, is trained).
    ``sample_real(m)`` / ``sample_fake(m)`` return ``(m, D)`` fresh samples. Returns the loss
    (nats per input pair, real + fake terms) of every step. Used to check the optimal
    discriminator identity ``D -> D*``.
    """
    if steps <= 0 or batch_size <= 0:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if isinstance(discriminator, GAN):
        critic, params = discriminator.critic, discriminator.discriminator.parameters()
    else:
        critic, params = discriminator, discriminator.parameters()
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc="discriminator", disable=not progress, leave=False):
        with torch.no_grad():
            real, fake = sample_real(batch_size), sample_fake(batch_size)
        d_loss = discriminator_loss("ns", critic(real).squeeze(-1), critic(fake).squeeze(-1))
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        opt.step()
        losses.append(float(d_loss.detach()))
    return losses


def discriminator_optimality(
    gan: GAN,
    sample_real: Callable[[int], torch.Tensor],
    log_prob_data: Callable[[torch.Tensor], torch.Tensor],
    log_prob_model: Callable[[torch.Tensor], torch.Tensor],
    grid: torch.Tensor,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``gan.discriminator`` against the fixed generator and compare it with ``D*`` on ``grid``.

    ``log_prob_data`` / ``log_prob_model`` give the two log-densities (nats) of points
    ``(M, D)``; they must be known in closed form (e.g. a Gaussian data set and an affine
    generator). Returns ``grid``, ``d`` (trained ``sigmoid(f(x))``), ``d_star``,
    ``max_abs_error`` and ``mean_abs_error`` (probabilities) and the training ``losses``.
    Packing is not supported here (``D*`` is defined for single samples).
    """
    if gan.pack != 1:
        raise ValueError("discriminator_optimality needs pack=1: D* is defined for single samples")
    gan.eval()
    losses = fit_discriminator(
        gan.discriminator,
        sample_real,
        lambda m: gan.sample(m),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        progress=progress,
    )
    with torch.no_grad():
        d = torch.sigmoid(gan.critic(grid).squeeze(-1))
        d_star = optimal_discriminator(log_prob_data(grid), log_prob_model(grid))
    err = (d - d_star).abs()
    return {
        "grid": grid,
        "d": d,
        "d_star": d_star,
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
        "losses": losses,
    }


def generator_gradient_norms(
    gan: GAN,
    data: torch.Tensor,
    *,
    d_steps: int = 500,
    measure_every: int = 25,
    batch_size: int = 256,
    num_z: int = 1024,
    lr: float = 1e-3,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Measure the generator gradient under the minimax and non-saturating losses as D improves.

    The generator stays fixed (as early in training, when it is far from the data); the
    discriminator is trained by cross-entropy for ``d_steps`` steps, and every
    ``measure_every`` steps the L2 norm of ``grad_theta`` of both generator losses is taken
    on the same ``num_z`` noise draws. Returns rows with ``d_step``, ``d_accuracy`` (share of
    real and fake inputs the discriminator classifies correctly), ``minimax_grad_norm``
    and ``ns_grad_norm``. As ``D(G(z)) -> 0`` the minimax gradient
    ``-E[D(G(z)) grad f]`` vanishes while the non-saturating ``-E[(1 - D(G(z))) grad f]``
    does not (Goodfellow et al. 2014, section 3; Arjovsky & Bottou 2017, figure 2).
    """
    data = as_data_tensor(data, "data", max_rank=2)
    if d_steps <= 0 or measure_every <= 0:
        raise ValueError(f"d_steps and measure_every must be positive, got {d_steps} and {measure_every}")
    gen_params = list(gan.generator.parameters())
    z = torch.randn(num_z - num_z % gan.pack, gan.latent_dim)
    opt = torch.optim.Adam(gan.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    rows = []

    def measure(step: int) -> None:
        norms = {}
        for name in ("minimax", "ns"):
            for p in gen_params:
                p.grad = None
            fake_logits = gan.discriminate(gan.generate(z))
            generator_loss(name, fake_logits).backward()
            norms[name] = gradient_norm(gen_params)
        for p in gen_params:
            p.grad = None
        with torch.no_grad():
            idx = torch.randint(0, data.shape[0], (z.shape[0],))
            acc_real = (gan.discriminate(data[idx]) > 0).float().mean()
            acc_fake = (gan.discriminate(gan.generate(z)) < 0).float().mean()
        rows.append(
            {
                "d_step": step,
                "d_accuracy": float(0.5 * (acc_real + acc_fake)),
                "minimax_grad_norm": norms["minimax"],
                "ns_grad_norm": norms["ns"],
            }
        )

    measure(0)
    for step in tqdm(range(1, d_steps + 1), desc="D vs fixed G", disable=not progress, leave=False):
        idx = torch.randint(0, data.shape[0], (batch_size - batch_size % gan.pack,))
        with torch.no_grad():
            fake = gan.generate(torch.randn(idx.shape[0], gan.latent_dim))
        d_loss = discriminator_loss("ns", gan.discriminate(data[idx]), gan.discriminate(fake))
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        opt.step()
        if step % measure_every == 0:
            measure(step)
    return rows
