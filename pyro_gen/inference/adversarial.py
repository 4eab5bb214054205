"""The adversarial objective of the engine: GAN losses, gradient penalty, PacGAN packing, moving averages.

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

The theory demos (the optimal discriminator, vanishing minimax gradients) live in
:mod:`pyro_gen.experiments.gan_theory`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import GAN_LOSSES, AdversarialConfig, TrainConfig
from ..data.checks import as_data_tensor
from ..models.gan import GAN, pack_samples
from .engine import train
from .objective import Objective, StepContext
from .result import FitResult

LOSSES = GAN_LOSSES
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


def grad_norm(params: Sequence[torch.Tensor]) -> float:
    """Return the L2 norm of the gradients of ``params`` (0 when none has one)."""
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


class AdversarialObjective(Objective):
    """The two-player game of a :class:`~pyro_gen.models.gan.GAN` as an objective of the engine.

    One engine step is one generator update, preceded by ``settings.critic_steps`` critic
    updates, each on a fresh real minibatch and as many generated points (packed ``gan.pack``
    at a time for PacGAN). Optimizer groups ``critic`` and ``generator`` are Adam with
    ``settings.betas``; the critic's rate is ``settings.lr_d`` (default: the generator's).
    With ``settings.ema`` a moving average of the generator weights is kept (:func:`make_ema`);
    evaluation, the checkpoint's ``module_state`` and the returned GAN use the average.
    History rows: ``d_loss``, ``g_loss`` (the loss's own units: nats for minimax/ns),
    ``d_real``/``d_fake`` (mean critic logits), ``g_grad_norm`` (generator gradient L2 norm),
    means since the previous row, and what ``eval_fn(gan)`` returns.
    """

    kind = "adversarial"
    postfix_keys = ("d_loss", "g_loss")

    def __init__(
        self,
        gan: GAN,
        settings: AdversarialConfig | None = None,
        *,
        eval_fn: Callable[[GAN], dict] | None = None,
    ):
        if not isinstance(gan, GAN):
            raise ValueError(f"gan must be a pyro_gen.models.gan.GAN, got {type(gan).__name__}")
        self.settings = settings = settings if settings is not None else AdversarialConfig()
        self.loss_name = check_loss(settings.loss)
        self.model = self.gan = gan
        self.eval_fn = eval_fn
        self.averaged = make_ema(gan.generator, settings.ema) if settings.ema is not None else None
        self.estimator = f"adversarial:{self.loss_name}" + (f":pack{gan.pack}" if gan.pack > 1 else "")

    def modules(self) -> dict[str, torch.nn.Module]:
        """Return the GAN (generator and critic)."""
        return {"gan": self.gan}

    def check_data(self, data: torch.Tensor, name: str) -> None:
        """Refuse data that are not ``(N, D)`` rows of the generator's dimension."""
        if data.dim() != 2:
            raise ValueError(f"{name} must be (N, D) rows for a GAN, got shape {tuple(data.shape)}")
        if data.shape[1] != self.gan.data_dim:
            raise ValueError(f"{name} has {data.shape[1]} columns but the GAN generates {self.gan.data_dim}")

    def setup(self, ctx: StepContext) -> None:
        """Check that the batch size is a multiple of the packing."""
        if ctx.batch_size % self.gan.pack != 0:
            raise ValueError(
                f"batch_size must be a positive multiple of pack={self.gan.pack}, got {ctx.batch_size}"
            )
        if self.averaged is not None:
            self.averaged.to(ctx.device)

    def make_optimizer(self, name: str, params: list[torch.Tensor], config) -> torch.optim.Optimizer:
        """Return Adam with the game's betas; the critic at ``lr_d`` (default ``lr``)."""
        lr = config.lr if name == "generator" or self.settings.lr_d is None else self.settings.lr_d
        return torch.optim.Adam(params, lr=lr, betas=self.settings.betas)

    def _fake(self, m: int, device: torch.device) -> torch.Tensor:
        return self.gan.generate(torch.randn(m, self.gan.latent_dim, device=device))

    def step(self, ctx: StepContext) -> dict[str, Any]:
        """Take the critic steps, then one generator step; return the numbers to log."""
        gan, pack, loss = self.gan, self.gan.pack, self.loss_name
        critic = gan.critic
        bs = ctx.batch_size
        for _ in range(self.settings.critic_steps):
            real = pack_samples(ctx.next_batch(), pack)
            with torch.no_grad():
                fake = pack_samples(self._fake(bs, real.device), pack)
            real_logits, fake_logits = critic(real).squeeze(-1), critic(fake).squeeze(-1)
            d_loss = discriminator_loss(loss, real_logits, fake_logits)
            if loss == "wgan-gp" and self.settings.gp_weight > 0:
                d_loss = d_loss + self.settings.gp_weight * gradient_penalty(critic, real, fake)
            d_val = ctx.update("critic", d_loss, gan.discriminator.parameters())
        fake = pack_samples(self._fake(bs, real.device), pack)
        g_loss = generator_loss(loss, critic(fake).squeeze(-1))
        gen_params = list(gan.generator.parameters())
        g_val = ctx.backward("generator", g_loss, gen_params)
        g_norm = grad_norm(gen_params)
        ctx.apply("generator")
        if self.averaged is not None:
            self.averaged.update_parameters(gan.generator)
        return {
            "loss": d_val + g_val,
            "d_loss": d_val,
            "g_loss": g_val,
            "d_real": float(real_logits.detach().mean()),
            "d_fake": float(fake_logits.detach().mean()),
            "g_grad_norm": g_norm,
        }

    def row(self, means: dict[str, float], ctx: StepContext) -> dict[str, Any]:
        """Return the means of the players' numbers (without the summed ``loss``)."""
        return {k: v for k, v in means.items() if k != "loss"}

    def evaluate(self, test_data: torch.Tensor | None, ctx: StepContext) -> dict[str, Any]:
        """Return ``eval_fn(gan)`` computed with the sampled (averaged) generator."""
        if self.eval_fn is None:
            return {}
        with _sampling_generator(self.gan, self.averaged):
            return dict(self.eval_fn(self.gan))

    def state_dict(self) -> dict[str, Any]:
        """Return the moving average's state and the raw generator weights (with ``ema``)."""
        if self.averaged is None:
            return {"loss": self.loss_name, "ema_state": None}
        return {
            "loss": self.loss_name,
            "ema_state": self.averaged.state_dict(),
            "raw_generator": self.gan.generator.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the moving average; refuse a checkpoint of another loss or ``ema`` setting."""
        if state.get("loss") != self.loss_name:
            raise ValueError(
                f"cannot resume: the checkpoint holds a {state.get('loss')!r} run, "
                f"not a {self.loss_name!r} run"
            )
        if (state.get("ema_state") is None) != (self.averaged is None):
            raise ValueError("cannot resume: ema must be set as in the saved run")
        if self.averaged is not None:
            self.averaged.load_state_dict(state["ema_state"])
            self.gan.generator.load_state_dict(state["raw_generator"])

    def checkpoint_module_state(self) -> dict[str, Any]:
        """Return the GAN's weights with the averaged generator (what is sampled)."""
        module_state = self.gan.state_dict()
        if self.averaged is not None:
            module_state.update({f"generator.{k}": v for k, v in self.averaged.module.state_dict().items()})
        return module_state

    def finish(self) -> None:
        """Sample from the average from now on."""
        if self.averaged is not None:
            self.gan.generator.load_state_dict(self.averaged.module.state_dict())

    def result_fields(self) -> dict[str, Any]:
        """Return the game's settings as ``params``."""
        s = self.settings
        return {
            "params": {
                "loss": self.loss_name,
                "pack": self.gan.pack,
                "d_steps": s.critic_steps,
                "lr_d": s.lr_d,
            }
        }


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
    threads: int | None = None,
) -> FitResult:
    """Train ``gan`` adversarially on ``data`` ``(N, D)`` with the engine; return a :class:`FitResult`.

    ``steps`` counts generator updates (default: ``epochs`` passes over the data, each pass
    ``N / batch_size`` generator updates; with neither, 1,000 steps). Before each generator
    update the critic takes ``d_steps`` updates, each on a fresh real minibatch of
    ``batch_size`` points (a multiple of ``gan.pack``). Both players use Adam with ``betas``;
    ``lr`` is the generator's rate, ``lr_d`` the critic's (default ``lr``); any engine
    schedule applies to both (``"linear"`` decays them to 0). ``transform`` is applied to
    every real minibatch. ``ema`` keeps a moving average of the generator's weights, used for
    evaluation and returned. History rows every ``log_every`` steps (see
    :class:`AdversarialObjective`), with ``eval_fn(gan)`` every ``eval_every`` steps and at
    the end; ``callbacks`` receive each row. ``checkpoint``/``checkpoint_every``/``resume``,
    ``device`` and ``threads`` are the engine's. A NaN or infinite loss raises
    :class:`~pyro_gen.inference.engine.TrainingDivergedError` naming the step.
    """
    if not isinstance(gan, GAN):
        raise ValueError(f"gan must be a pyro_gen.models.gan.GAN, got {type(gan).__name__}")
    if not isinstance(batch_size, int) or batch_size <= 0 or batch_size % gan.pack != 0:
        raise ValueError(f"batch_size must be a positive multiple of pack={gan.pack}, got {batch_size!r}")
    if not isinstance(d_steps, int) or d_steps <= 0:
        raise ValueError(f"d_steps must be a positive integer, got {d_steps!r}")
    settings = AdversarialConfig(
        loss=check_loss(loss),
        d_steps=d_steps,
        gp_weight=gp_weight,
        lr_d=lr_d,
        beta1=betas[0],
        beta2=betas[1],
        ema=ema,
    )
    config = TrainConfig(
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        optimizer="adam",
        lr_schedule=lr_schedule,
        seed=seed,
        device=None if device is None else str(device),
        threads=threads,
        log_every=log_every,
        eval_every=eval_every if eval_every is not None else 10**12,
        checkpoint_every=checkpoint_every,
        progress=progress,
    )
    objective = AdversarialObjective(gan, settings, eval_fn=eval_fn)
    n = as_data_tensor(data, "data", max_rank=2).shape[0]
    return train(
        objective,
        data,
        config,
        test_data=data[: min(n, 1)] if eval_fn is not None else None,
        transform=transform,
        checkpoint=checkpoint,
        resume=resume,
        row_callbacks=callbacks,
        default_steps=1000,
    )
