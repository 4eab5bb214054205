"""A plain minibatch loss as an objective of the engine (deterministic autoencoders, classifiers).

The model is anything with ``loss(x) -> scalar`` (mean per data point) and parameters, such
as :class:`~pyro_gen.models.autoencoders.Autoencoder`. History rows carry ``train_loss``
(mean since the previous row) and ``test_loss`` (the whole held-out set), per data point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from .engine import train
from .objective import Objective, StepContext, StepInfo
from .result import FitResult


@torch.no_grad()
def mean_loss(model: Any, data: torch.Tensor, batch_size: int = 1024) -> float:
    """Return ``model.loss`` averaged over all rows of ``data`` (per data point)."""
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        xb = data[start : start + batch_size]
        total += float(model.loss(xb)) * xb.shape[0]
    return total / data.shape[0]


class LossObjective(Objective):
    """Minimize ``model.loss(batch)`` with one optimizer over the model's parameters."""

    kind = "loss"
    postfix_keys = ("train_loss",)

    def __init__(self, model: torch.nn.Module, estimator: str | None = None):
        if not callable(getattr(model, "loss", None)):
            raise ValueError(f"{type(model).__name__} has no loss(x) method to minimize")
        self.model = model
        self.estimator = estimator or f"autoencoder:{getattr(model, 'kind', 'plain')}"

    def modules(self) -> dict[str, torch.nn.Module]:
        """Return the model."""
        return {"model": self.model}

    def check_data(self, data: torch.Tensor, name: str) -> None:
        """Defer to the model's own ``check_data`` when it has one."""
        if hasattr(self.model, "check_data"):
            self.model.check_data(data, name)

    def step(self, ctx: StepContext) -> dict[str, Any]:
        """Take one optimizer step on the loss of the next batch."""
        loss = self.model.loss(ctx.next_batch())
        return {"loss": ctx.update("main", loss, self.model.parameters())}

    def row(self, means: dict[str, float], ctx: StepContext) -> dict[str, Any]:
        """Return ``train_loss`` and an empty ``test_loss``."""
        return {"train_loss": means.get("loss", float("nan")), "test_loss": None}

    def evaluate(self, test_data: torch.Tensor, ctx: StepContext) -> dict[str, Any]:
        """Return ``test_loss``: the loss per data point of the whole held-out set."""
        return {"test_loss": mean_loss(self.model, test_data)}


def train_autoencoder(
    model: torch.nn.Module,
    data: torch.Tensor,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    test_data: torch.Tensor | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    log_every: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    config: TrainConfig | None = None,
) -> FitResult:
    """Minimise ``model.loss(batch)`` by minibatch gradient descent; return a :class:`FitResult`.

    Minibatches of ``batch_size`` rows are shuffled each epoch (last partial batch dropped)
    and passed through ``transform`` (e.g. dynamic binarization). Train for ``epochs`` or
    ``steps``. Every ``log_every`` steps (default one epoch) a history row records
    ``train_loss`` (mean since the last row, per data point), ``test_loss`` (on
    ``test_data``, or None) and the cumulative training ``seconds``. ``config`` replaces
    every training setting given here.
    """
    if config is None:
        config = TrainConfig(
            epochs=epochs,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            log_every=log_every,
            seed=seed,
            progress=progress,
        )
    return train(
        LossObjective(model),
        data,
        config,
        test_data=test_data,
        transform=transform,
        checkpoint=checkpoint,
        resume=resume,
        callbacks=callbacks,
    )
