"""The adversarial trainer: GAN losses, gradient penalty, PacGAN packing, and the theory made visible.

A GAN is not fitted by maximizing a likelihood or an ELBO: a discriminator ``D`` (a critic
returning logits ``f(x)``) and the generator ``G`` play a two-player game. Losses, written on
logits (``sigma`` the logistic function, ``softplus(t) = log(1 + e^t)``):

=============  ==============================================  ===================================
``loss``       discriminator minimizes                         generator minimizes
=============  ==============================================  ===================================
``minimax``    ``softplus(-f(x)) + softplus(f(G(z)))``          ``-softplus(f(G(z)))`` = E log(1 - D)
``ns``         same as minimax                                 ``softplus(-f(G(z)))`` = -E log D
``wgan-gp``    ``f(G(z)) - f(x) + lambda (|grad f(x_hat)| - 1)^2``  ``-f(G(z))``
``hinge``      ``relu(1 - f(x)) + relu(1 + f(G(z)))``          ``-f(G(z))``
``lsgan``      ``((f(x) - 1)^2 + f(G(z))^2) / 2``              ``(f(G(z)) - 1)^2 / 2``
=============  ==============================================  ===================================

References: Goodfellow et al. 2014 (minimax, non-saturating, ``D*``), Gulrajani et al. 2017
(WGAN-GP), Lim & Ye 2017 / Miyato et al. 2018 (hinge), Mao et al. 2017 (least squares), Lin
et al. 2018 (PacGAN).

Theory made visible: :func:`discriminator_optimality` trains a discriminator against a fixed
generator and compares it with ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``;
:func:`generator_gradient_norms` shows the minimax generator gradient vanishing as the
discriminator becomes confident, while the non-saturating one does not.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyro
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.checks import as_data_tensor
from ..models.gan import GAN, pack_samples
from .checkpoint import load_checkpoint, save_checkpoint
from .result import FitResult
from .svi import resolve_device

LOSSES = ("minimax", "ns", "wgan-gp", "hinge", "lsgan")
_ALIASES = {
    "non-saturating": "ns",
    "nonsaturating": "ns",
    "wgan": "wgan-gp",
    "wgangp": "wgan-gp",
    "least-squares": "lsgan",
    "ls": "lsgan",
}


def check_loss(loss: str) -> str:
    """Return the canonical loss name for ``loss`` (aliases accepted); ``ValueError`` otherwise."""
    name = _ALIASES.get(str(loss).lower(), str(loss).lower())
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {loss!r}; choose one of {', '.join(LOSSES)}")
    return name


def discriminator_loss(loss: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Return the discriminator's loss (a scalar to minimize) for ``loss``, without gradient penalty.

    For ``minimax``/``ns`` this is the binary cross-entropy in nats per (packed) input.
    """
    loss = check_loss(loss)
    if loss in ("minimax", "ns"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if loss == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    if loss == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return 0.5 * ((real_logits - 1.0).pow(2).mean() + fake_logits.pow(2).mean())


def generator_loss(loss: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Return the generator's loss (a scalar to minimize) for ``loss`` from the critic's fake logits."""
    loss = check_loss(loss)
    if loss == "minimax":  # E log(1 - D(G(z))) = -E softplus(f)
        return -F.softplus(fake_logits).mean()
    if loss == "ns":  # -E log D(G(z)) = E softplus(-f)
        return F.softplus(-fake_logits).mean()
    if loss in ("wgan-gp", "hinge"):
        return -fake_logits.mean()
    return 0.5 * (fake_logits - 1.0).pow(2).mean()


def gradient_penalty(critic: Callable, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Return WGAN-GP's penalty ``E (|grad_x f(x_hat)|_2 - 1)^2`` (Gulrajani et al. 2017).

    ``x_hat`` are uniform random interpolations between rows of ``real`` and ``fake`` (same
    shape, ``(B, D)``, already packed when packing is used). The result keeps the graph, so it
    can be added to the critic's loss.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.reshape(grad.shape[0], -1).norm(dim=1) - 1.0).pow(2).mean()


def _grad_norm(params: Sequence[torch.Tensor]) -> float:
    sq = [p.grad.pow(2).sum() for p in params if p.grad is not None]
    return float(torch.stack(sq).sum().sqrt()) if sq else 0.0


def make_ema(module: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """Return torch's ``AveragedModel`` keeping an exponential moving average of ``module``'s weights.

    The decay after ``t`` updates is ``min(decay, (1 + t) / (10 + t))`` (the warm-up of
    TensorFlow's ``ExponentialMovingAverage``) so the random initial weights are forgotten
    quickly; batch-norm buffers are averaged too. Sampling from the average of the
    generator's recent weights (Yazici et al. 2019) removes much of the oscillation of
    adversarial training and sharpens the modes.
    """

    def avg_fn(avg: torch.Tensor, new: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(num)) / (10.0 + float(num)))
        return d * avg + (1.0 - d) * new

    return torch.optim.swa_utils.AveragedModel(module, avg_fn=avg_fn, use_buffers=True)


class _sampling_generator:
    """Context manager: swap the averaged generator weights in (for evaluation), then back."""

    def __init__(self, gan: GAN, averaged: torch.optim.swa_utils.AveragedModel | None):
        self.gan, self.averaged, self.saved = gan, averaged, None

    def __enter__(self) -> None:
        if self.averaged is not None:
            self.saved = {k: v.clone() for k, v in self.gan.generator.state_dict().items()}
            self.gan.generator.load_state_dict(self.averaged.module.state_dict())

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            self.gan.generator.load_state_dict(self.saved)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def train_gan(
    gan: GAN,
    data: torch.Tensor,
    *,
    loss: str = "ns",
    steps: int | None = None,
    epochs: float | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    lr_d: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    d_steps: int = 1,
    gp_weight: float = 10.0,
    lr_schedule: str = "constant",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int | None = None,
    log_every: int = 100,
    eval_fn: Callable[[GAN], dict] | None = None,
    eval_every: int | None = None,
    callbacks: Sequence[Callable[[dict], None]] = (),
    checkpoint: str | Path | None = None,
    progress: bool | None = True,
    ema: float | None = None,
    checkpoint_every: int | None = None,
    resume: str | Path | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    """Train ``gan`` adversarially on ``data`` ``(N, D)``; return a :class:`FitResult`.

    ``steps`` counts generator updates (default: ``epochs`` passes over the data, each pass
    ``N / batch_size`` generator updates; with neither, 1,000 steps). Before each generator
    update the discriminator takes ``d_steps`` updates, each on a fresh real minibatch of
    ``batch_size`` points (a multiple of ``gan.pack``; each packed input holds ``pack`` of
    them) and as many generated points. Both players use Adam with ``betas``; ``lr`` is the
    generator's learning rate, ``lr_d`` the discriminator's (default ``lr``); with
    ``lr_schedule="linear"`` both decay linearly to 0 over the ``steps`` generator updates. ``transform``
    is applied to every real minibatch (e.g. dynamic binarization). ``ema`` (a decay such as
    0.999) keeps an exponential moving average of the generator's weights (:func:`make_ema`);
    evaluation and the returned ``gan`` use the averaged generator.

    ``history`` rows (every ``log_every`` steps) hold ``step``, ``epoch``, ``d_loss`` and
    ``g_loss`` (means since the previous row, in the loss's own units: nats for
    minimax/ns), ``d_real``/``d_fake`` (mean critic logit on real/generated inputs),
    ``g_grad_norm`` (mean L2 norm of the generator gradient), ``seconds`` (training wall
    time so far, excluding evaluation) and whatever ``eval_fn(gan)`` returns every
    ``eval_every`` steps (and at the end). ``callbacks`` receive each row.
    ``FitResult.seconds`` is the total training time in seconds. A checkpoint (module and
    optimizer state, RNG, loop position) is written at the end when ``checkpoint`` is set,
    and every ``checkpoint_every`` generator steps; its ``module_state`` holds the weights
    that are sampled (the averaged generator with ``ema``). ``resume`` (a checkpoint path)
    continues such a run from its saved step with the same settings: optimizers, schedules,
    moving average, data order and RNG are restored, so an interrupted run ends where an
    uninterrupted one would. ``device`` (``"cpu"``, ``"cuda[:i]"``, ``"auto"``) moves ``gan`` and
    ``data`` there.
    """
    loss = check_loss(loss)
    if not isinstance(gan, GAN):
        raise ValueError(f"gan must be a pyro_gen.models.gan.GAN, got {type(gan).__name__}")
    data = as_data_tensor(data, "data", max_rank=2)
    if data.shape[1] != gan.data_dim:
        raise ValueError(f"data has {data.shape[1]} columns but the GAN generates {gan.data_dim}")
    if not isinstance(batch_size, int) or batch_size <= 0 or batch_size % gan.pack != 0:
        raise ValueError(f"batch_size must be a positive multiple of pack={gan.pack}, got {batch_size!r}")
    for name, v in (("lr", lr), ("lr_d", lr if lr_d is None else lr_d)):
        if not v > 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if not isinstance(d_steps, int) or d_steps <= 0:
        raise ValueError(f"d_steps must be a positive integer, got {d_steps!r}")
    if gp_weight < 0:
        raise ValueError(f"gp_weight must be non-negative, got {gp_weight}")
    if lr_schedule not in ("constant", "linear"):
        raise ValueError(f"lr_schedule must be 'constant' or 'linear', got {lr_schedule!r}")
    if log_every <= 0:
        raise ValueError(f"log_every must be positive, got {log_every}")
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError(f"ema must be a decay in (0, 1), got {ema}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every <= 0):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    dev = resolve_device(device)
    if dev is not None:
        gan.to(dev)
        data = data.to(dev)
    dev = data.device
    n = data.shape[0]
    steps_per_epoch = max(1, n // batch_size)
    if steps is None:
        steps = int(math.ceil((epochs if epochs is not None else 1000 / steps_per_epoch) * steps_per_epoch))
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if seed is not None:
        pyro.set_rng_seed(seed)

    gen_params = list(gan.generator.parameters())
    disc_params = list(gan.discriminator.parameters())
    opt_g = torch.optim.Adam(gen_params, lr=lr, betas=betas)
    opt_d = torch.optim.Adam(disc_params, lr=lr if lr_d is None else lr_d, betas=betas)
    schedulers = []
    if lr_schedule == "linear":  # decay both learning rates linearly to 0: sharpens the modes
        for opt in (opt_g, opt_d):
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps)))
    critic = gan.critic
    gan.train()
    averaged = make_ema(gan.generator, ema) if ema is not None else None

    perm, cursor = torch.randperm(n), 0
    history: list[dict[str, Any]] = []
    train_seconds = 0.0
    start = 1
    if resume is not None:
        state = load_checkpoint(resume)
        loop = state["loop"]
        if loop.get("loss") != loss or "perm" not in loop:
            raise ValueError(
                f"cannot resume from {resume}: it holds a {loop.get('loss')!r} run without the loop "
                f"state of train_gan, not a {loss!r} run"
            )
        if (loop.get("ema_state") is None) != (averaged is None):
            raise ValueError(f"cannot resume from {resume}: ema must be set as in the saved run")
        gan.load_state_dict(state["module_state"])
        if averaged is not None:
            averaged.load_state_dict(loop["ema_state"])
            gan.generator.load_state_dict(loop["raw_generator"])
        opt_g.load_state_dict(state["optimizer_state"]["generator"])
        opt_d.load_state_dict(state["optimizer_state"]["discriminator"])
        for sched, s_state in zip(schedulers, state["optimizer_state"].get("schedulers", [])):
            sched.load_state_dict(s_state)
        perm, cursor = loop["perm"], int(loop["cursor"])
        history, train_seconds, start = list(loop["history"]), float(loop["seconds"]), int(loop["step"]) + 1
        _set_rng_state(state["rng"])

    def real_batch() -> torch.Tensor:
        nonlocal perm, cursor
        if cursor + batch_size > n:
            perm, cursor = torch.randperm(n), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        x = data[idx]
        return transform(x) if transform is not None else x

    def fake_batch(m: int) -> torch.Tensor:
        return gan.generate(torch.randn(m, gan.latent_dim, device=dev))

    def save(path: str | Path, step: int) -> Path:
        module_state = gan.state_dict()
        raw_generator = ema_state = None
        if averaged is not None:  # module_state holds what is sampled: the averaged generator
            raw_generator = gan.generator.state_dict()
            ema_state = averaged.state_dict()
            module_state.update({f"generator.{k}": v for k, v in averaged.module.state_dict().items()})
        return save_checkpoint(
            {
                "module_state": module_state,
                "optimizer_state": {
                    "generator": opt_g.state_dict(),
                    "discriminator": opt_d.state_dict(),
                    "schedulers": [sc.state_dict() for sc in schedulers],
                },
                "param_store": pyro.get_param_store().get_state(),
                "rng": _rng_state(),
                "loop": {
                    "step": step,
                    "loss": loss,
                    "raw_generator": raw_generator,
                    "ema_state": ema_state,
                    "perm": perm,
                    "cursor": cursor,
                    "history": history,
                    "seconds": train_seconds,
                },
            },
            path,
        )

    sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, "g_grad_norm": 0.0}
    count = 0
    # progress=None: tqdm decides (shown on a terminal, hidden when output is redirected)
    bar = tqdm(
        total=steps,
        initial=start - 1,
        desc=f"GAN ({loss})",
        disable=None if progress is None else not progress,
        leave=False,
    )
    for step in range(start, steps + 1):
        t0 = time.perf_counter()
        for _ in range(d_steps):
            real = pack_samples(real_batch(), gan.pack)
            with torch.no_grad():
                fake = pack_samples(fake_batch(batch_size), gan.pack)
            real_logits, fake_logits = critic(real).squeeze(-1), critic(fake).squeeze(-1)
            d_loss = discriminator_loss(loss, real_logits, fake_logits)
            if loss == "wgan-gp" and gp_weight > 0:
                d_loss = d_loss + gp_weight * gradient_penalty(critic, real, fake)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        fake = pack_samples(fake_batch(batch_size), gan.pack)
        fake_logits_g = critic(fake).squeeze(-1)
        g_loss = generator_loss(loss, fake_logits_g)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        g_norm = _grad_norm(gen_params)
        opt_g.step()
        if averaged is not None:
            averaged.update_parameters(gan.generator)
        for sched in schedulers:
            sched.step()
        train_seconds += time.perf_counter() - t0
        d_val, g_val = float(d_loss.detach()), float(g_loss.detach())
        if not (math.isfinite(d_val) and math.isfinite(g_val)):
            bar.close()
            raise FloatingPointError(f"GAN training diverged at step {step}: d_loss={d_val}, g_loss={g_val}")
        sums["d_loss"] += d_val
        sums["g_loss"] += g_val
        sums["d_real"] += float(real_logits.detach().mean())
        sums["d_fake"] += float(fake_logits.detach().mean())
        sums["g_grad_norm"] += g_norm
        count += 1
        bar.update(1)
        evaluate_now = eval_fn is not None and (
            step == steps or (eval_every is not None and step % eval_every == 0)
        )
        if step % log_every == 0 or step == steps or evaluate_now:
            row: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch}
            row.update({k: v / count for k, v in sums.items()})
            row["seconds"] = train_seconds
            if evaluate_now:
                with _sampling_generator(gan, averaged):
                    row.update(eval_fn(gan))
                gan.train()
            history.append(row)
            bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}")
            for cb in callbacks:
                cb(row)
            sums = dict.fromkeys(sums, 0.0)
            count = 0
        if checkpoint is not None and checkpoint_every is not None and step % checkpoint_every == 0:
            if step < steps:  # (the last step is saved below)
                save(checkpoint, step)
    bar.close()
    ckpt_path = save(checkpoint, steps) if checkpoint is not None else None
    if averaged is not None:  # sample from the average from now on
        gan.generator.load_state_dict(averaged.module.state_dict())
    gan.eval()
    return FitResult(
        model=gan,
        history=history,
        steps=steps,
        epochs=steps / steps_per_epoch,
        seconds=train_seconds,
        estimator=f"adversarial:{loss}" + (f":pack{gan.pack}" if gan.pack > 1 else ""),
        checkpoint=ckpt_path,
        params={"loss": loss, "pack": gan.pack, "d_steps": d_steps, "lr": lr, "lr_d": lr_d or lr},
    )


# --------------------------------------------------------------------------------------
# Theory made visible
# --------------------------------------------------------------------------------------


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
            norms[name] = _grad_norm(gen_params)
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
